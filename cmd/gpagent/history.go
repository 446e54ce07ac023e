package main

import (
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"
)

func cmdHistory(ctx context.Context, io cmdIO, args []string) error {
	fs := newFlags(io, "history", "[--json]")
	addr := addrFlag(fs)
	asJSON := fs.Bool("json", false, "print JSON: [{\"time\", \"dbid\", \"desc\"}]")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	h, err := client(*addr).History(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(io.out)
		enc.SetIndent("", "  ")
		return enc.Encode(h)
	}
	w := tabwriter.NewWriter(io.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "time\tdbid\tdesc")
	for _, e := range h {
		fmt.Fprintf(w, "%s\t%d\t%s\n", e.Time.Local().Format(time.DateTime+".000"), e.DBID, e.Desc)
	}
	return w.Flush()
}
