package consensus

import (
	"bytes"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/gpagent/gpagent/topology"
)

// greenplumTopology is a running cluster of Greenplum's size: a
// coordinator, 1,000 hosts with 8 primaries each (contents 0-7999), their
// mirrors spread over the next 8 hosts, every pair up and in sync, and a
// full history (topology.MaxHistory rows, as after months of running).
func greenplumTopology(tb testing.TB) *topology.Topology {
	tb.Helper()
	const hosts, perHost = 1000, 8
	t := &topology.Topology{ClusterID: "c-0123456789abcdef", ConfigVersion: 123456, SegPrefix: "gpseg",
		Mirrors: topology.MirrorDefaults{PortBase: 7000, Placement: "spread"}}
	for range perHost {
		t.Mirrors.DataDirs = append(t.Mirrors.DataDirs, "/data/mirror")
	}
	seg := func(dbid, content int, r topology.Role, host, port int, dir string) topology.Segment {
		name := fmt.Sprintf("sdw%d", host)
		if host == 0 {
			name = "cdw"
		}
		return topology.Segment{DBID: dbid, Content: content, Role: r, PreferredRole: r,
			Mode: topology.ModeSynced, Status: topology.StatusUp, Port: port, Hostname: name,
			Address: fmt.Sprintf("10.0.%d.%d", host/250, 1+host%250), DataDir: fmt.Sprintf("%s/gpseg%d", dir, content)}
	}
	coord := seg(1, -1, topology.RolePrimary, 0, 5432, "/data/coordinator")
	coord.Mode = topology.ModeNotSynced
	t.Segments = append(t.Segments, coord)
	dbid := 2
	for c := range hosts * perHost {
		h := c / perHost
		t.Segments = append(t.Segments, seg(dbid, c, topology.RolePrimary, 1+h, 6000+c%perHost, "/data/primary"))
		t.Segments = append(t.Segments, seg(dbid+1, c, topology.RoleMirror, 1+(h+1+c%perHost)%hosts, 7000+c%perHost, "/data/mirror"))
		dbid += 2
	}
	at := time.Date(2026, 1, 2, 3, 4, 5, 678901234, time.UTC)
	for i := range topology.MaxHistory {
		t.History = append(t.History, topology.HistoryEntry{Time: at.Add(time.Duration(i) * time.Second),
			DBID: 2 + i%(2*hosts*perHost), Desc: "mirror promoted: primary lost (lease of sdw123 expired)"})
	}
	if err := topology.Validate(t); err != nil {
		tb.Fatal(err)
	}
	return t
}

type countingWriter struct{ n int64 }

func (w *countingWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }

// BenchmarkSnapshot_8000Contents is one Raft snapshot of a cluster of
// Greenplum's size (greenplumTopology), as every server writes it each
// time raft_snapshot_threshold entries have piled up: its time, and its
// size as the bytes metric (what gpbench scale reports as
// snapshot_bytes at 1,000 agents; history is bounded by MaxHistory, so
// this is about the most a snapshot of this cluster holds).
func BenchmarkSnapshot_8000Contents(b *testing.B) {
	t := greenplumTopology(b)
	var size int64
	for b.Loop() {
		w := &countingWriter{}
		if err := writeSnapshot(w, t); err != nil {
			b.Fatal(err)
		}
		size = w.n
	}
	b.ReportMetric(float64(size), "bytes")
}

// The snapshot of a Greenplum-size cluster restores to the same topology.
func TestSnapshot_8000ContentsRoundTrip(t *testing.T) {
	top := greenplumTopology(t)
	var buf bytes.Buffer
	if err := writeSnapshot(&buf, top); err != nil {
		t.Fatal(err)
	}
	size := buf.Len()
	got, err := readSnapshot(io.NopCloser(&buf))
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Segments) != len(top.Segments) || len(got.History) != len(top.History) || got.ConfigVersion != top.ConfigVersion {
		t.Fatalf("restored %d segments, %d history rows, version %d", len(got.Segments), len(got.History), got.ConfigVersion)
	}
	t.Logf("snapshot of %d instances and %d history rows: %d bytes", len(top.Segments), len(top.History), size)
}
