package topology

import (
	"fmt"
)

// DatabaseState is the one word Greenplum Command Center shows for a
// whole cluster.
type DatabaseState string

const (
	StateNormal      DatabaseState = "Normal"
	StateDown        DatabaseState = "Segment(s) Down"
	StateResyncing   DatabaseState = "Resyncing"
	StateUnbalanced  DatabaseState = "Unbalanced"
	StateUnreachable DatabaseState = "Database Unreachable"
)

// Verdict is a cluster's DatabaseState, why, and what an operator runs
// next ("" when nothing).
type Verdict struct {
	State  DatabaseState
	Why    string
	Action string
}

// Classify gives t's DatabaseState. The worst condition wins, in this
// order: a content with no up primary (queries fail: Unreachable), an
// instance down that no recovery is working on (Segment(s) Down), a
// recovery or a mirror catching up (Resyncing), a segment out of its
// preferred role (Unbalanced). An uninitialized topology is Unreachable:
// there is no database.
func Classify(t *Topology) Verdict {
	if !t.Initialized() {
		return Verdict{StateUnreachable, "no cluster yet", "gpagent init"}
	}
	lk := newLookups(t)
	// Each content's primary (the first recorded, as Primary finds), in
	// one pass: Primary per content scanned every segment once per
	// content, quadratic at 16,000 instances.
	primary := map[int]Segment{}
	for _, s := range t.Segments {
		if _, ok := primary[s.Content]; !ok && s.Role == RolePrimary {
			primary[s.Content] = s
		}
	}
	for _, c := range t.Contents() {
		if p, ok := primary[c]; !ok || p.Status != StatusUp {
			why := fmt.Sprintf("content %d has no up primary", c)
			if c == CoordinatorContent {
				why = "the coordinator has no up primary"
			}
			if t.Paused {
				return Verdict{StateUnreachable, why + " and automatic failover is paused", "gpagent resume"}
			}
			return Verdict{StateUnreachable, why, "gpagent state -e"}
		}
	}
	var down, resyncing, unbalanced int
	for _, s := range t.Segments {
		_, recovering := lk.recovering(s.DBID)
		pending := lk.pending[s.DBID]
		switch {
		case recovering || pending:
			resyncing++
		case s.Status != StatusUp:
			down++
		case s.Role == RoleMirror && s.Mode != ModeSynced:
			resyncing++ // up, streaming, not yet caught up
		}
		if s.Content != CoordinatorContent && s.Status == StatusUp && s.Role != s.PreferredRole {
			unbalanced++
		}
	}
	switch {
	case down > 0:
		return Verdict{StateDown, plural(down, "instance") + " down", "gpagent recoverseg -a"}
	case resyncing > 0:
		return Verdict{StateResyncing, plural(resyncing, "instance") + " recovering or catching up", "wait; gpagent state -e shows progress"}
	case unbalanced > 0:
		return Verdict{StateUnbalanced, plural(unbalanced, "instance") + " not in preferred role", "gpagent recoverseg -r"}
	}
	return Verdict{State: StateNormal}
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
