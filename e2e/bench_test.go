package e2e

import (
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkStateJSON measures `gpagent state --json` on the demo cluster
// (coordinator and two mirrored segments): the whole CLI process, and the
// API call alone. It prints median and worst over the runs.
func BenchmarkStateJSON(b *testing.B) {
	d := startDemo(b, "--hosts", "1")
	const runs = 30
	cli := make([]time.Duration, 0, runs)
	call := make([]time.Duration, 0, runs)
	c := d.client(d.addr)
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

// BenchmarkIdleAgent measures what an idle agent costs its host: CPU
// (share of one core) and resident memory, per agent of a 3-host demo
// whose cluster is up and quiet, sampled over 20 s. It prints the median
// and worst over the agents.
func BenchmarkIdleAgent(b *testing.B) {
	d := startDemo(b)
	const window = 20 * time.Second
	var cpu, rss []float64
	perHost := map[string][]float64{}
	for b.Loop() {
		hosts := d.hostNames()
		start := map[string]float64{}
		for _, h := range hosts {
			start[h] = procCPUSeconds(b, d.hostAgentPID(h))
		}
		t0 := time.Now()
		<-time.After(window) // the measurement window itself, not a settle delay
		elapsed := time.Since(t0).Seconds()
		for _, h := range hosts {
			pid := d.hostAgentPID(h)
			c := 100 * (procCPUSeconds(b, pid) - start[h]) / elapsed
			cpu = append(cpu, c)
			perHost[h] = append(perHost[h], c)
			rss = append(rss, procRSSMB(b, pid))
		}
	}
	slices.Sort(cpu)
	slices.Sort(rss)
	b.ReportMetric(cpu[len(cpu)/2], "cpu_pct_median")
	b.ReportMetric(cpu[len(cpu)-1], "cpu_pct_worst")
	b.ReportMetric(rss[len(rss)-1], "rss_mb_worst")
	fmt.Printf("idle agent over %s windows (%d samples): CPU median %.2f%%, worst %.2f%% of a core; RSS median %.1f MB, worst %.1f MB\n",
		window, len(cpu), cpu[len(cpu)/2], cpu[len(cpu)-1], rss[len(rss)/2], rss[len(rss)-1])
	leader := d.state().Leader
	for _, h := range slices.Sorted(maps.Keys(perHost)) {
		c := perHost[h]
		slices.Sort(c)
		role := ""
		if h == leader {
			role = " (Raft leader)"
		}
		fmt.Printf("  %s%s: CPU median %.2f%%, worst %.2f%%\n", h, role, c[len(c)/2], c[len(c)-1])
	}
}

// procCPUSeconds is utime+stime of a process from /proc (clock ticks of
// 1/100 s on Linux).
func procCPUSeconds(b *testing.B, pid int) float64 {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100
}

func procRSSMB(b *testing.B, pid int) float64 {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.Fields(v)[0], 64)
			return kb / 1024
		}
	}
	return 0
}
