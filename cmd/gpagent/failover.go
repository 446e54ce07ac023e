package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
)

func cmdPause(ctx context.Context, io cmdIO, args []string, paused bool) error {
	name := "resume"
	if paused {
		name = "pause"
	}
	fs := newFlags(io, name, "")
	addr := addrFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	s, err := client(*addr).SetPaused(ctx, paused)
	if err != nil {
		return err
	}
	if s.Paused {
		fmt.Fprintf(io.out, "automatic failover paused (config version %d); gpagent resume restarts it\n", s.ConfigVersion)
	} else {
		fmt.Fprintf(io.out, "automatic failover on (config version %d)\n", s.ConfigVersion)
	}
	return nil
}

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
