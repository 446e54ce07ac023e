package main

import (
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"
)

func cmdMembers(ctx context.Context, io cmdIO, args []string) error {
	fs := newFlags(io, "members", "[--json]")
	addr := addrFlag(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	m, err := client(*addr).Members(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(io.out)
		enc.SetIndent("", "  ")
		return enc.Encode(m)
	}
	w := tabwriter.NewWriter(io.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "agent\tgossip\tstatus\traft\tapi\tinstances")
	for _, x := range m.Members {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%v\n", x.Name, x.Gossip, x.Status, x.RaftRole, x.APIAddr, x.Instances)
	}
	fmt.Fprintf(w, "leader: %s\n", orNone(m.Leader))
	return w.Flush()
}
