package agent

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/gpagent/gpagent/consensus"
	"github.com/gpagent/gpagent/membership"
)

// deadVoterGrace is how long a voter must be dead in gossip before the
// leader replaces it: long enough that a restart or a short cut does not
// churn the Raft configuration.
const deadVoterGrace = 15 * time.Second

// voterRound is how often the leader compares the Raft configuration with
// gossip besides the gossip events that wake it (a join, a leave, a
// failure): it repairs a dropped event and counts down deadVoterGrace.
const voterRound = 2 * time.Second

// manageVoters keeps the Raft configuration in line with gossip: alive
// agents join (as voters up to the target, then as nonvoters), a voter
// dead or left for deadVoterGrace is replaced by a healthy nonvoter, and
// an agent that left is removed once it has been gone remove_left_after.
// A graceful leave is what every stop sends, a restart's included: taken
// as a removal at once, it put a restarted agent out of the cluster, and
// one with nobody to join (the bootstrap agent) stayed out and fenced.
// The voter count never tracks the host count (Consul and Nomad keep 3 to
// 5 voting servers).
func (l *leader) manageVoters(ctx context.Context) {
	a := l.a
	servers, err := a.node.Servers()
	if err != nil {
		return
	}
	// By agent name: an agent whose data dir was wiped comes back under
	// the same name with a new server id.
	inRaft := map[string]consensus.Server{}
	voters := 0
	for _, s := range servers {
		inRaft[s.Name] = s
		if s.Voter {
			voters++
		}
	}
	members := a.mesh.Members()
	slices.SortFunc(members, func(x, y membership.Member) int { return strings.Compare(x.Name, y.Name) })
	now := a.clock.Now()
	for _, m := range members {
		s, known := inRaft[m.Name]
		switch {
		case m.Status == membership.StatusAlive && known && m.Meta.RaftAddr != "" && m.Meta.RaftID != "" && s.ID != m.Meta.RaftID && m.Name != a.cfg.Name:
			// The agent's Raft identity changed: its data dir was wiped,
			// and the log the old member held is gone. The old member
			// goes, the agent joins afresh (a nonvoter catches up before
			// it is promoted): it never votes in the old one's place.
			l.changeServers(ctx, "remove (identity changed)", s.ID, func() error { return a.node.RemoveServer(ctx, s.ID) })
			if s.Voter {
				voters--
			}
			l.changeServers(ctx, "add nonvoter (identity changed)", m.Meta.RaftID, func() error { return a.node.AddNonvoter(ctx, m.Meta.RaftID, m.Meta.RaftAddr) })
			delete(l.deadSince, m.Name)
		case m.Status == membership.StatusLeft && known && m.Name != a.cfg.Name:
			since, seen := l.deadSince[m.Name]
			if !seen {
				l.deadSince[m.Name] = now
				continue
			}
			if now.Sub(since) >= a.live().RemoveLeftAfter {
				l.changeServers(ctx, "remove (left over "+a.live().RemoveLeftAfter.String()+" ago)", s.ID, func() error { return a.node.RemoveServer(ctx, s.ID) })
				if s.Voter {
					voters--
				}
				delete(l.deadSince, m.Name)
				continue
			}
			if !s.Voter {
				continue
			}
			// A voter that left (for a restart or for good) is
			// replaced after deadVoterGrace as a dead one is: the
			// quorum must not wait on it.
			fallthrough
		case m.Status == membership.StatusDead && known && s.Voter:
			since, seen := l.deadSince[m.Name]
			if !seen {
				l.deadSince[m.Name] = now
				continue
			}
			if now.Sub(since) < l.deadVoterGrace {
				continue
			}
			if repl, ok := healthyNonvoter(members, inRaft); ok {
				rid := inRaft[repl.Name].ID
				l.changeServers(ctx, "promote (replaces a dead voter)", rid, func() error { return a.node.AddVoter(ctx, rid, repl.Meta.RaftAddr) })
				l.changeServers(ctx, "demote (dead)", s.ID, func() error { return a.node.DemoteVoter(ctx, s.ID) })
				inRaft[repl.Name] = consensus.Server{ID: rid, Name: repl.Name, Voter: true}
			}
		case m.Status == membership.StatusAlive && !known && m.Meta.RaftAddr != "":
			delete(l.deadSince, m.Name)
			rid := raftID(m)
			if voters < a.cfg.Voters {
				l.changeServers(ctx, "add voter", rid, func() error { return a.node.AddVoter(ctx, rid, m.Meta.RaftAddr) })
				voters++
			} else {
				l.changeServers(ctx, "add nonvoter", rid, func() error { return a.node.AddNonvoter(ctx, rid, m.Meta.RaftAddr) })
			}
		case m.Status == membership.StatusAlive && known && !s.Voter && voters < a.cfg.Voters:
			l.changeServers(ctx, "promote to voter", s.ID, func() error { return a.node.AddVoter(ctx, s.ID, m.Meta.RaftAddr) })
			voters++
		case m.Status == membership.StatusAlive:
			delete(l.deadSince, m.Name)
		}
	}
}

func healthyNonvoter(members []membership.Member, inRaft map[string]consensus.Server) (membership.Member, bool) {
	for _, m := range members {
		if s, ok := inRaft[m.Name]; ok && !s.Voter && m.Status == membership.StatusAlive {
			return m, true
		}
	}
	return membership.Member{}, false
}

func (l *leader) changeServers(ctx context.Context, what, id string, f func() error) {
	if err := f(); err != nil {
		if ctx.Err() == nil {
			l.log.Warn("raft membership change failed", "change", what, "agent", id, "err", err)
		}
		return
	}
	l.log.Info("raft membership changed", "change", what, "agent", id)
}

// raftID is the Raft server id a member advertises; an agent too old to
// advertise one is a member under its name.
func raftID(m membership.Member) string {
	if m.Meta.RaftID != "" {
		return m.Meta.RaftID
	}
	return m.Name
}
