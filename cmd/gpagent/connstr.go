package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
)

// cmdConnstr prints a libpq connection string that lists every instance of
// a content, so a client reconnecting after a failover finds the new
// primary: target_session_attrs=read-write skips the standbys. The
// password comes from the libpq password file ($PGPASSFILE; the demo's
// env file sets it).
func cmdConnstr(ctx context.Context, io cmdIO, args []string) error {
	fs := newFlags(io, "connstr", "[--content C] [--dbname NAME]")
	addr := addrFlag(fs)
	content := fs.Int("content", -1, "content id (-1, the coordinator, by default)")
	dbname := fs.String("dbname", "", "database (default postgres)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	ci, err := client(*addr).ConnInfo(ctx, *content)
	if err != nil {
		return err
	}
	hosts := make([]string, 0, len(ci.Hosts))
	ports := make([]string, 0, len(ci.Hosts))
	for _, h := range ci.Hosts {
		hosts = append(hosts, h.Address)
		ports = append(ports, strconv.Itoa(h.Port))
	}
	db := ci.DBName
	if *dbname != "" {
		db = *dbname
	}
	fmt.Fprintf(io.out, "host=%s port=%s user=%s dbname=%s target_session_attrs=read-write connect_timeout=2\n",
		strings.Join(hosts, ","), strings.Join(ports, ","), ci.User, db)
	return nil
}
