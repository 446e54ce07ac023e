package topology

import "testing"

func TestClassify(t *testing.T) {
	seg := func(dbid, content int, role, pref Role, mode Mode, status Status) Segment {
		return Segment{DBID: dbid, Content: content, Role: role, PreferredRole: pref, Mode: mode, Status: status}
	}
	p, m := RolePrimary, RoleMirror
	s, n := ModeSynced, ModeNotSynced
	up, down := StatusUp, StatusDown
	coord := seg(1, -1, p, p, n, up)
	healthy := []Segment{coord, seg(2, 0, p, p, s, up), seg(3, 0, m, m, s, up), seg(4, 1, p, p, s, up), seg(5, 1, m, m, s, up)}
	with := func(changes ...Segment) *Topology {
		out := append([]Segment(nil), healthy...)
		for _, c := range changes {
			for i := range out {
				if out[i].DBID == c.DBID {
					out[i] = c
				}
			}
		}
		return &Topology{Segments: out}
	}
	cases := []struct {
		name   string
		t      *Topology
		state  DatabaseState
		action string
	}{
		{"no cluster", &Topology{}, StateUnreachable, "gpagent init"},
		{"healthy", with(), StateNormal, ""},
		{"mirrorless", &Topology{Segments: []Segment{coord, seg(2, 0, p, p, n, up)}}, StateNormal, ""},
		{"a mirror down", with(seg(3, 0, m, m, n, down), seg(2, 0, p, p, n, up)), StateDown, "gpagent recoverseg -a"},
		{"after a failover", with(seg(2, 0, m, p, n, down), seg(3, 0, p, m, n, up)), StateDown, "gpagent recoverseg -a"},
		{"recovering after a failover", func() *Topology {
			t := with(seg(2, 0, m, p, n, down), seg(3, 0, p, m, n, up))
			t.Recoveries = []Recovery{{DBID: 2, Kind: RecoveryIncremental, Job: 1, Active: true}}
			return t
		}(), StateResyncing, "wait; gpagent state -e shows progress"},
		{"mirror up catching up", with(seg(2, 0, m, p, n, up), seg(3, 0, p, m, n, up)), StateResyncing, "wait; gpagent state -e shows progress"},
		{"unbalanced", with(seg(2, 0, m, p, s, up), seg(3, 0, p, m, s, up)), StateUnbalanced, "gpagent recoverseg -r"},
		{"double fault", with(seg(4, 1, p, p, n, down), seg(5, 1, m, m, n, down)), StateUnreachable, "gpagent state -e"},
		{"coordinator down", with(seg(1, -1, p, p, n, down)), StateUnreachable, "gpagent state -e"},
		{"double fault while paused", func() *Topology {
			t := with(seg(4, 1, p, p, n, down), seg(5, 1, m, m, n, up))
			t.Paused = true
			return t
		}(), StateUnreachable, "gpagent resume"},
		{"down wins over unbalanced", with(seg(2, 0, m, p, s, up), seg(3, 0, p, m, s, up), seg(5, 1, m, m, n, down)), StateDown, "gpagent recoverseg -a"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := Classify(tc.t)
			if v.State != tc.state || v.Action != tc.action {
				t.Errorf("got %q (%s) action %q, want %q action %q", v.State, v.Why, v.Action, tc.state, tc.action)
			}
		})
	}
}
