package agent

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/gpagent/gpagent/api"
	"github.com/gpagent/gpagent/topology"
)

// A heartbeat is accepted exactly as the full report it names, made again
// on the heartbeat's version, would be (DESIGN.md rule 5 keeps its
// meaning): the same acknowledgement, the same count of the host heard
// (a report made on an older version is heard only once a later one
// shows it applied; a stalled one never), the same observations held.
// One naming a full report the leader does not hold (never received,
// replaced, pruned) is answered resend and changes nothing.
func TestLeader_HeartbeatCountsAsTheFullReportItNames(t *testing.T) {
	clock := newJumpClock()
	node := &fakeLeaderNode{clientNode: newClientNode(false)}
	segs := []topology.Segment{
		{DBID: 2, Content: 0, Role: topology.RolePrimary, Hostname: "h1", Status: topology.StatusUp},
		{DBID: 3, Content: 0, Role: topology.RoleMirror, Hostname: "h2", Status: topology.StatusUp},
	}
	version := uint64(10)
	node.commit(&topology.Topology{ConfigVersion: version, Segments: segs})
	full := newTermLeader(clock, node) // gets every report in full
	beat := newTermLeader(clock, node) // gets heartbeats after the first
	full.lostHosts(node.Topology(), clock.Now())
	beat.lostHosts(node.Topology(), clock.Now())
	h1 := api.InstanceReport{DBID: 2, Up: true, SyncedMirrors: []int{3}}
	h2 := api.InstanceReport{DBID: 3, Up: true, Recovery: true, Streaming: true}
	const seq1, seq2 = 100, 200
	maxAge := 3*time.Second + 500*time.Millisecond
	for i := range 12 {
		clock.advance(time.Second)
		// Each step commits a swap of content 0's roles, so the
		// acknowledgement (and its lease version) moves for both hosts,
		// and reports made a step behind are proved by the next. h2
		// stalls on version 10 (its Raft, say): never heard, lost after
		// lease plus margin and its grace.
		version++
		segs[0].Role, segs[1].Role = segs[1].Role, segs[0].Role
		node.commit(&topology.Topology{ConfigVersion: version, Segments: append([]topology.Segment(nil), segs...)})
		made := version - 1
		seen := clock.Now().UTC()
		r1, r2 := h1, h2
		r1.ConfigVersion, r1.Seen, r1.LSNValue = made, seen, uint64(1000+i) // the LSN moves on its own
		r2.ConfigVersion, r2.Seen = 10, seen
		ackF1 := full.a.acceptReport(api.Report{Agent: "h1", Seq: uint64(seq1 + i), Instances: []api.InstanceReport{r1}})
		ackF2 := full.a.acceptReport(api.Report{Agent: "h2", Seq: uint64(seq2 + i), Instances: []api.InstanceReport{r2}})
		var ackB1, ackB2 *api.ReportAck
		if i == 0 {
			ackB1 = beat.a.acceptReport(api.Report{Agent: "h1", Seq: seq1, Instances: []api.InstanceReport{r1}})
			ackB2 = beat.a.acceptReport(api.Report{Agent: "h2", Seq: seq2, Instances: []api.InstanceReport{r2}})
		} else {
			var err1, err2 error
			ackB1, err1 = beat.a.acceptHeartbeat(api.Report{Agent: "h1", Same: seq1, ConfigVersion: made, Seen: seen})
			ackB2, err2 = beat.a.acceptHeartbeat(api.Report{Agent: "h2", Same: seq2, ConfigVersion: 10, Seen: seen})
			if err1 != nil || err2 != nil {
				t.Fatalf("step %d: heartbeats naming the full reports held refused: %v, %v", i, err1, err2)
			}
		}
		if *ackF1 != *ackB1 || *ackF2 != *ackB2 {
			t.Fatalf("step %d: acks differ: full %v %v, heartbeat %v %v", i, *ackF1, *ackF2, *ackB1, *ackB2)
		}
		now := clock.Now()
		lf, lb := full.lostHosts(node.Topology(), now), beat.lostHosts(node.Topology(), now)
		if !reflect.DeepEqual(lf, lb) {
			t.Fatalf("step %d: lost %v after full reports, %v after heartbeats", i, lf, lb)
		}
		of, ob := full.observations(now, maxAge), beat.observations(now, maxAge)
		for _, o := range []map[int]topology.Observation{of, ob} {
			for dbid, x := range o {
				x.LSN = 0 // a heartbeat carries none
				o[dbid] = x
			}
		}
		if !reflect.DeepEqual(of, ob) {
			t.Fatalf("step %d: observations %+v after full reports, %+v after heartbeats", i, of, ob)
		}
		if got := beat.instances(); len(got) != 2 || !got[0].Seen.Equal(seen) {
			t.Fatalf("step %d: held reports %+v, want both probed at %v (the heartbeat's)", i, got, seen)
		}
	}
	if lost := beat.lostHosts(node.Topology(), clock.Now()); lost["h1"] || !lost["h2"] {
		t.Fatalf("lost %v, want h2 (stalled) and not h1", lost)
	}

	// Resend: a Seq not held, or one whose reports were replaced or
	// pruned; nothing is refreshed.
	resend := func(what string, hb api.Report) {
		t.Helper()
		before := beat.instances()
		if _, err := beat.a.acceptHeartbeat(hb); !errors.Is(err, api.ErrResend) {
			t.Fatalf("%s: heartbeat answered %v, want resend", what, err)
		}
		if after := beat.instances(); !reflect.DeepEqual(before, after) {
			t.Fatalf("%s: a refused heartbeat changed the reports held: %+v -> %+v", what, before, after)
		}
	}
	clock.advance(time.Second)
	resend("an older Seq", api.Report{Agent: "h1", Same: seq1 - 1, ConfigVersion: version})
	resend("another agent's Seq", api.Report{Agent: "h2", Same: seq1, ConfigVersion: version})
	resend("an agent never heard", api.Report{Agent: "h9", Same: seq1, ConfigVersion: version})
	// A full report of h1 without a Seq (an older agent) replaces it.
	beat.a.acceptReport(api.Report{Agent: "h1", Instances: []api.InstanceReport{h1}})
	resend("after a full report without a Seq", api.Report{Agent: "h1", Same: seq1, ConfigVersion: version})
	// dbid 3 removed from the topology and its report pruned.
	node.commit(&topology.Topology{ConfigVersion: version + 1, Segments: segs[:1]})
	beat.pruneReports(node.Topology())
	resend("after its instance's report was pruned", api.Report{Agent: "h2", Same: seq2, ConfigVersion: version + 1})
	if _, err := beat.a.acceptHeartbeat(api.Report{Agent: "h1", Same: 1, Instances: []api.InstanceReport{h1}}); !errors.Is(err, api.ErrInvalid) {
		t.Fatalf("a heartbeat carrying instances answered %v, want invalid", err)
	}
	// Observations age out without heartbeats that match.
	clock.advance(maxAge + time.Millisecond)
	if obs := beat.observations(clock.Now(), maxAge); len(obs) != 0 {
		t.Fatalf("observations %v still fresh though every heartbeat since was refused", obs)
	}
}

// sameReport ignores only what moves on its own: a round that differs in
// anything else is sent in full.
func TestSameReport(t *testing.T) {
	base := api.InstanceReport{DBID: 2, Host: "h1", ConfigVersion: 5, Seen: time.Unix(1, 0), Phase: "running", Up: true,
		LSN: "0/10", LSNValue: 16, SyncStandbyNames: "gpseg0_3", SyncedMirrors: []int{3},
		Replicas: []api.ReplicaState{{ApplicationName: "gpseg0_3", State: "streaming", SyncState: "sync", FlushLagBytes: 1, ReplayLagBytes: 2}}}
	same := []func(r *api.InstanceReport){
		func(r *api.InstanceReport) { r.ConfigVersion = 9 },
		func(r *api.InstanceReport) { r.Seen = time.Unix(2, 0) },
		func(r *api.InstanceReport) { r.LSN, r.LSNValue = "0/20", 32 },
		func(r *api.InstanceReport) { r.Replicas[0].FlushLagBytes, r.Replicas[0].ReplayLagBytes = 7, 8 },
	}
	differ := []func(r *api.InstanceReport){
		func(r *api.InstanceReport) { r.Up, r.Failed = false, true },
		func(r *api.InstanceReport) { r.SyncedMirrors = nil },
		func(r *api.InstanceReport) { r.StoppedLSN = 16 },
		func(r *api.InstanceReport) { r.Replicas[0].SyncState = "async" },
		func(r *api.InstanceReport) { r.Progress = &api.Progress{Done: 1} },
		func(r *api.InstanceReport) { r.Phase = "failed" },
	}
	clone := func() api.InstanceReport {
		r := base
		r.Replicas = append([]api.ReplicaState(nil), base.Replicas...)
		return r
	}
	for i, f := range same {
		r := clone()
		f(&r)
		if !sameReport(base, r) {
			t.Errorf("change %d: reported different, want the same (it moves on its own)", i)
		}
	}
	for i, f := range differ {
		r := clone()
		f(&r)
		if sameReport(base, r) {
			t.Errorf("change %d: reported the same, want different", i)
		}
	}
	if base.Replicas[0].FlushLagBytes != 1 {
		t.Error("sameReport changed its argument's replicas")
	}
}

// TestLease_HeartbeatNeverOutlivesTheLeadersCount is
// TestLease_NeverOutlivesTheLeadersCount with heartbeats: each round the
// agent sends a full report or a heartbeat naming its last full report
// (answered resend, and then sent in full, when the leader does not hold
// it), and the lease is never renewed later than the leader counts the
// host heard.
func TestLease_HeartbeatNeverOutlivesTheLeadersCount(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		clock := newJumpClock()
		node := &fakeLeaderNode{clientNode: newClientNode(false)}
		topo := &topology.Topology{ConfigVersion: 5, Segments: []topology.Segment{{DBID: 2, Content: 0, Role: topology.RolePrimary, Hostname: "h1"}}}
		node.commit(topo)
		a := &Agent{
			cfg:   &Config{Lease: 3 * time.Second, LeaseMargin: time.Second},
			log:   slog.New(slog.NewTextHandler(io.Discard, nil)),
			clock: clock,
			node:  node,
			lease: &lease{renewedCh: make(chan struct{}, 1)},
		}
		e := &executor{a: a}
		a.exec = e
		l := newLeader(a)
		a.lead = l
		l.heard = topology.NewLastHeard(clock.Now())
		l.lostHosts(topo, clock.Now())
		var committed, applied uint64 = 5, 5
		var seq, lastFull uint64
		for i := range rapid.IntRange(1, 40).Draw(rt, "rounds") {
			sent := drawRound(rt, i, clock, &committed, &applied)
			reports := []api.InstanceReport{{DBID: 2, Host: "h1", Up: true, ConfigVersion: applied}}
			if !rapid.Bool().Draw(rt, fmt.Sprintf("reportLost%d", i)) {
				acked := true
				if lastFull != 0 && rapid.Bool().Draw(rt, fmt.Sprintf("heartbeat%d", i)) {
					acked = l.heartbeat("h1", api.Report{Agent: "h1", Same: lastFull, ConfigVersion: applied}, committed)
				} else {
					acked = false
				}
				if !acked { // a full report (or the one a resend asks for)
					seq++
					sent = clock.Now()
					l.acceptFull("h1", seq, reports, committed)
					lastFull = seq
				}
				if !rapid.Bool().Draw(rt, fmt.Sprintf("answerLost%d", i)) {
					e.acknowledged(sent, reports, committed)
				}
			}
			leaseNotPastHeard(rt, i, a, l)
		}
	})
}
