package consensus

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// LeaderChanges delivers raft's leadership transitions in order (true:
// this node became leader; false: it stopped being leader). Transitions
// queue until read, so raft is never blocked by a slow reader. Meant for
// one reader, the agent's leader loop.
func (n *Node) LeaderChanges() <-chan bool { return n.leaderChanges }

// WaitLeader waits until this node knows of a leader (itself, for a
// single bootstrapped node) or ctx ends.
func (n *Node) WaitLeader(ctx context.Context) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if id, _ := n.Leader(); id != "" {
			return nil
		}
		if n.raft.State() == raft.Shutdown {
			return fmt.Errorf("wait for a raft leader: %w", raft.ErrRaftShutdown)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for a raft leader: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

// forwardLeadership moves raft's NotifyCh into LeaderChanges through an
// unbounded queue: raft blocks on NotifyCh, and a leader whose
// notification nobody read would never start leading. Transitions are
// rare, so the queue stays small.
func (n *Node) forwardLeadership(in <-chan bool) {
	defer close(n.forwardDone)
	var queue []bool
	for {
		var out chan<- bool
		var head bool
		if len(queue) > 0 {
			out, head = n.leaderChanges, queue[0]
		}
		select {
		case v := <-in:
			n.log.Info("leadership changed", "leader", v)
			n.setRoleTiming(v)
			queue = append(queue, v)
		case out <- head:
			queue = queue[1:]
		case <-n.stopForward:
			n.flushLeadership(in, queue)
			return
		}
	}
}

// setRoleTiming switches raft to the heartbeat pace of its new role
// (config.go): a leader heartbeats at LeaderHeartbeatTimeout, a follower
// times out after HeartbeatTimeout.
func (n *Node) setRoleTiming(leader bool) {
	rc := n.cfg.reloadable(n.raft.ReloadableConfig(), leader)
	if err := n.raft.ReloadConfig(rc); err != nil {
		n.log.Warn("raft timing not changed for the new role", "leader", leader, "err", err)
	}
}

// flushLeadership hands over, without blocking Close, what raft sent
// before it stopped (its last "false" among them).
func (n *Node) flushLeadership(in <-chan bool, queue []bool) {
drain:
	for {
		select {
		case v := <-in:
			queue = append(queue, v)
		default:
			break drain
		}
	}
	for _, v := range queue {
		select {
		case n.leaderChanges <- v:
		default:
			n.log.Warn("leadership change dropped at close: nobody read LeaderChanges", "leader", v)
		}
	}
}
