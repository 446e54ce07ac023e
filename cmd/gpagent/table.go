package main

import (
	"context"
	"errors"
	"fmt"
	"text/tabwriter"

	"github.com/gpagent/gpagent/api"
)

// cmdTable is gpagent table create / list: distributed tables reached
// through the coordinator.
func cmdTable(ctx context.Context, cio cmdIO, args []string) error {
	if len(args) == 0 {
		return errors.New("want a subcommand: create NAME --distributed-by COL --ddl \"CREATE TABLE NAME (...)\" [-a], or list")
	}
	switch args[0] {
	case "create":
		return cmdTableCreate(ctx, cio, args[1:])
	case "list":
		return cmdTableList(ctx, cio, args[1:])
	}
	return fmt.Errorf("unknown subcommand %q: want create or list", args[0])
}

func cmdTableCreate(ctx context.Context, cio cmdIO, args []string) error {
	fs := newFlags(cio, "table create", "NAME --distributed-by COL --ddl \"CREATE TABLE NAME (...)\" [-a]")
	addr := addrFlag(fs)
	by := fs.String("distributed-by", "", "the column whose hash picks the content of a row")
	ddl := fs.String("ddl", "", "the CREATE TABLE statement, run on every content's primary")
	yes := fs.Bool("a", false, "do not ask for confirmation")
	// NAME may come before the flags, as the usage shows.
	var name string
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		name, args = args[0], args[1:]
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if name == "" && fs.NArg() == 1 {
		name = fs.Arg(0)
	} else if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	switch {
	case name == "":
		return errors.New("NAME: required")
	case *by == "":
		return errors.New("--distributed-by: required")
	case *ddl == "":
		return errors.New("--ddl: required")
	}
	if !*yes {
		fmt.Fprintf(cio.out, "table %s: created on every content's primary, and on the coordinator partitioned by hash of %s\n", name, *by)
		if err := confirm(cio, "Continue with table create"); err != nil {
			return err
		}
	}
	res, err := client(*addr).CreateTable(ctx, api.Table{Name: name, DistributedBy: *by, DDL: *ddl})
	if err != nil {
		return err
	}
	if res.Existed {
		fmt.Fprintf(cio.out, "table %s already exists: nothing changed\n", name)
		return nil
	}
	fmt.Fprintf(cio.out, "table %s created: %d contents, distributed by %s; query it through the coordinator (gpagent connstr)\n", name, res.Contents, *by)
	return nil
}

func cmdTableList(ctx context.Context, cio cmdIO, args []string) error {
	fs := newFlags(cio, "table list", "")
	addr := addrFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	list, err := client(*addr).Tables(ctx)
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(cio.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "name\tdistributed by")
	for _, t := range list {
		fmt.Fprintf(w, "%s\t%s\n", t.Name, t.DistributedBy)
	}
	return w.Flush()
}
