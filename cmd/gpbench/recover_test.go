package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseScales(t *testing.T) {
	good := map[string][]int{
		"64,256":    {64, 256},
		"1":         {1},
		" 8 , 2 ,4": {8, 2, 4},
	}
	for in, want := range good {
		got, err := parseScales(in)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("parseScales(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", ",", "64,", "0", "-1", "1.5", "a", "64,64", "1,,2"} {
		if got, err := parseScales(in); err == nil {
			t.Errorf("parseScales(%q) = %v, want an error", in, got)
		} else if !strings.Contains(err.Error(), "--scales") {
			t.Errorf("parseScales(%q): error %q does not name the flag", in, err)
		}
	}
}

func TestSummarizeScale(t *testing.T) {
	runs := []incrementalRun{
		{walBytes: 10 * mib, recover: 2500 * time.Millisecond},
		{walBytes: 11 * mib, recover: 1200 * time.Millisecond},
		{walBytes: 12 * mib, recover: 1700 * time.Millisecond},
	}
	fulls := []fullRun{
		{recover: 20 * time.Second, bytes: 1000 * mib, cp: 4 * time.Second, cpSync: 10 * time.Second, cpBytes: 1000 * mib, copyPhase: 16 * time.Second, copyBytes: 800 * mib},
		{recover: 10 * time.Second, bytes: 1000 * mib, cp: 5 * time.Second, cpSync: 10 * time.Second, cpBytes: 1000 * mib, copyPhase: 8 * time.Second, copyBytes: 800 * mib},
		{recover: 25 * time.Second, bytes: 1000 * mib, cp: 5 * time.Second, cpSync: 5 * time.Second, cpBytes: 1000 * mib},
	}
	got := summarizeScale(64, 1100*mib+mib/2, runs, fulls)
	want := scaleResult{
		Scale: 64, Runs: 3, DatadirMB: 1100.5, ChangedWALMB: 11,
		IncrementalS: secondsSummary{P50: 1.7, Max: 2.5},
		FullRuns:     3, FullS: secondsSummary{P50: 20, Max: 25}, FullMB: 1000,
		// rates 50, 100, 40 MB/s against cp 250, 200, 200
		FullMBPerS: 50, CpMBPerS: 200, FullVsCp: ratioSummary{P50: 0.2, Worst: 0.2},
		CpSyncMBPerS: 100, FullVsCpSync: ratioSummary{P50: 0.5, Worst: 0.2},
		// only two runs have a copy phase: 50 and 100 MB/s
		CopyS: secondsSummary{P50: 8, Max: 16}, CopyMBPerS: 50,
		CopyVsCp: ratioSummary{P50: 0.2, Worst: 0.2}, CopyVsCpSync: ratioSummary{P50: 0.5, Worst: 0.5},
	}
	if got != want {
		t.Errorf("summarizeScale\n got %+v\nwant %+v", got, want)
	}
	// No copy measured: no ratio, no division by zero.
	if r := summarizeScale(1, 0, nil, nil); r.FullVsCp != (ratioSummary{}) || r.CpMBPerS != 0 || r.FullMBPerS != 0 || r.ChangedWALMB != 0 {
		t.Errorf("empty scale: %+v", r)
	}
}

func TestRecoverSummaryJSON(t *testing.T) {
	s := recoverSummary{Scales: []scaleResult{{Scale: 64, Runs: 3, DatadirMB: 1024.5, ChangedWALMB: 10.2,
		IncrementalS: secondsSummary{P50: 1.234, Max: 2.5}, FullRuns: 1, FullS: secondsSummary{P50: 20.5, Max: 20.5}, FullMB: 1000, FullMBPerS: 48.8, CpMBPerS: 250, FullVsCp: ratioSummary{P50: 0.195, Worst: 0.195}}}}
	want := `{"scales":[{"scale":64,"runs":3,"datadir_mb":1024.5,"changed_wal_mb":10.2,"incremental_s":{"p50":1.234,"max":2.5},"full_runs":1,"full_s":{"p50":20.5,"max":20.5},"full_mb":1000,"full_mb_per_s":48.8,"cp_mb_per_s":250,"full_vs_cp":{"p50":0.195,"worst":0.195},"cp_sync_mb_per_s":0,"full_vs_cp_sync":{"p50":0,"worst":0},"copy_s":{"p50":0,"max":0},"copy_mb_per_s":0,"copy_vs_cp":{"p50":0,"worst":0},"copy_vs_cp_sync":{"p50":0,"worst":0}}]}`
	if got := s.jsonLine(); got != want {
		t.Errorf("summary\n got %s\nwant %s", got, want)
	}
	if got := (recoverSummary{}).jsonLine(); got != `{"scales":[]}` {
		t.Errorf("empty summary: %s", got)
	}
}

func TestDirSize(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "a", "b"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, n := range map[string]int{"x": 100, "a/y": 2000, "a/b/z": 30000} {
		if err := os.WriteFile(filepath.Join(dir, name), bytes.Repeat([]byte{1}, n), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("x", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if got, err := dirSize(dir); err != nil || got != 32100 {
		t.Errorf("dirSize = %d, %v; want 32100", got, err)
	}
	if _, err := dirSize(filepath.Join(dir, "nonexistent")); err == nil {
		t.Error("dirSize of a missing folder: no error")
	}
}

func TestOnlyVanished(t *testing.T) {
	cases := map[string]bool{
		"": false,
		"cp: cannot stat 'd/pg_wal/000000010000000000000003': No such file or directory\n":                           true,
		"cp: cannot stat 'a': No such file or directory\ncp: cannot open 'b' for reading: No such file or directory": true,
		"cp: cannot stat 'a': No such file or directory\ncp: error writing 'b': No space left on device":             false,
		"cp: cannot open 'd/base/1/1234' for reading: Permission denied":                                             false,
	}
	for in, want := range cases {
		if got := onlyVanished(in); got != want {
			t.Errorf("onlyVanished(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestRecoverUsage(t *testing.T) {
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"recover", "-h"}, 0, "usage: gpbench recover"},
		{[]string{"recover", "--scales", "0"}, 1, "--scales"},
		{[]string{"recover", "--scales", "64,x"}, 1, "--scales"},
		{[]string{"recover", "--runs", "0"}, 1, "--runs"},
		{[]string{"recover", "--full-runs", "0"}, 1, "--full-runs"},
		{[]string{"recover", "--change-mb", "0"}, 1, "--change-mb"},
		{[]string{"recover", "--hosts", "10"}, 1, "--hosts"},
		{[]string{"recover", "--gpagent", "x", "--build-gpagent"}, 1, "at most one"},
		{[]string{"recover", "--gpagent", "/nonexistent/gpagent"}, 1, "/nonexistent/gpagent"},
		{[]string{"recover", "extra"}, 2, "unexpected argument"},
		{[]string{"recover", "--frob"}, 2, "flag provided but not defined"},
	}
	for _, tc := range cases {
		var out, errOut bytes.Buffer
		code := run(context.Background(), tc.args, &out, &errOut)
		if code != tc.code || !strings.Contains(errOut.String(), tc.want) {
			t.Errorf("gpbench %v: exit %d, stderr %q; want exit %d and %q", tc.args, code, errOut.String(), tc.code, tc.want)
		}
		if code == 1 && strings.Count(strings.TrimSpace(errOut.String()), "\n") != 0 {
			t.Errorf("gpbench %v: error is not one line: %q", tc.args, errOut.String())
		}
	}
}

// TestRecoverSmoke loads a tiny pgbench database into a demo of three
// hosts and runs one incremental and one full recovery (a copy from the
// primary's agent to the mirror's, on another host).
func TestRecoverSmoke(t *testing.T) {
	bin := testGpagent(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	started := time.Now()
	// --drop-caches=false: the other packages' tests run meanwhile.
	code := run(ctx, []string{"recover", "--gpagent", bin, "--scales", "1", "--runs", "1", "--full-runs", "1", "--change-mb", "2", "--drop-caches=false"}, &out, &errOut)
	t.Logf("gpbench recover --scales 1 --runs 1 took %s; stderr:\n%s", time.Since(started).Round(time.Millisecond), errOut.String())
	if code != 0 {
		t.Fatalf("exit %d; stdout:\n%s", code, out.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	last := lines[len(lines)-1]
	var s recoverSummary
	dec := json.NewDecoder(strings.NewReader(last))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		t.Fatalf("last stdout line %q: %v", last, err)
	}
	if len(s.Scales) != 1 {
		t.Fatalf("want one scale: %s", last)
	}
	r := s.Scales[0]
	if r.Scale != 1 || r.Runs != 1 {
		t.Errorf("scale %d runs %d, want 1 and 1", r.Scale, r.Runs)
	}
	if r.DatadirMB < 15 || r.FullMB < 15 {
		t.Errorf("data dir %.1f MB, recovered %.1f MB: a scale-1 pgbench database alone is 15 MB", r.DatadirMB, r.FullMB)
	}
	if r.ChangedWALMB < 2 {
		t.Errorf("changed %.1f MB of WAL, want at least --change-mb 2", r.ChangedWALMB)
	}
	if r.IncrementalS.P50 <= 0 || r.IncrementalS.Max != r.IncrementalS.P50 || r.FullRuns != 1 || r.FullS.P50 <= 0 || r.FullMBPerS <= 0 || r.CpMBPerS <= 0 || r.FullVsCp.P50 <= 0 || r.CpSyncMBPerS <= 0 || r.FullVsCpSync.P50 <= 0 {
		t.Errorf("a figure is missing: %s", last)
	}
	if r.CopyS.P50 <= 0 || r.CopyMBPerS <= 0 || r.CopyVsCp.P50 <= 0 {
		t.Errorf("no copy phase: the full recovery did not copy the files through the primary's agent: %s", last)
	}
	if strings.Contains(errOut.String(), "gpbench: kept ") {
		t.Error("a demo folder was kept: something went wrong")
	}
}

func TestCopyPhase(t *testing.T) {
	dir := t.TempDir()
	for host, log := range map[string]string{
		"sdw1": `time=2026-11-25T00:39:00.014Z level=INFO msg="data files copied" agent=sdw1 component=supervisor datadir=/d/m0 files=1007 bytes=1030629479 checkpoint=89ms copy=1.548s stop=19ms
time=2026-11-25T00:39:00.034Z level=INFO msg="copy flushed to disk" agent=sdw1 component=supervisor datadir=/d/m0 syncfs=18ms
`,
		"sdw2": `time=2026-11-25T00:39:00.014Z level=INFO msg="data files copied" agent=sdw2 component=supervisor datadir=/d/other files=1 bytes=5 checkpoint=1s copy=1s stop=1s
`,
	} {
		if err := os.MkdirAll(filepath.Join(dir, host), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, host, "agent.log"), []byte(log), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if d, n := copyPhase(dir, "/d/m0"); d != 1674*time.Millisecond || n != 1030629479 {
		t.Errorf("copyPhase = %s, %d; want 1.674s, 1030629479", d, n)
	}
	if d, n := copyPhase(dir, "/d/none"); d != 0 || n != 0 {
		t.Errorf("copyPhase of a dir never copied = %s, %d; want 0, 0", d, n)
	}
}
