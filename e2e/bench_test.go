package e2e

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/gpagent/gpagent/api"
)

// BenchmarkStateJSON measures `gpagent state --json` on the demo cluster
// (coordinator and two mirrored segments): the whole CLI process, and the
// API call alone. It prints median and worst over the runs.
func BenchmarkStateJSON(b *testing.B) {
	d := startDemo(b, "--hosts", "1")
	const runs = 30
	cli := make([]time.Duration, 0, runs)
	call := make([]time.Duration, 0, runs)
	c := api.NewClient(d.addr)
	for b.Loop() {
		cli, call = cli[:0], call[:0]
		for range runs {
			start := time.Now()
			if _, err := d.gpagent("state", "--json"); err != nil {
				b.Fatal(err)
			}
			cli = append(cli, time.Since(start))
			start = time.Now()
			if _, err := c.State(context.Background()); err != nil {
				b.Fatal(err)
			}
			call = append(call, time.Since(start))
		}
	}
	med, worst := medianWorst(cli)
	cmed, cworst := medianWorst(call)
	b.ReportMetric(float64(med.Microseconds())/1000, "cli_median_ms")
	b.ReportMetric(float64(worst.Microseconds())/1000, "cli_worst_ms")
	b.ReportMetric(float64(cmed.Microseconds())/1000, "api_median_ms")
	fmt.Printf("gpagent state --json over %d runs: median %s, worst %s (API call alone: median %s, worst %s)\n", runs, med, worst, cmed, cworst)
}

func medianWorst(ds []time.Duration) (median, worst time.Duration) {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2], s[len(s)-1]
}
