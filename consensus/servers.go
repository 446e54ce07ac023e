package consensus

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// Server is one member of the raft configuration.
type Server struct {
	ID      string // Raft server id, name#random
	Name    string // the agent's name
	Address string
	Voter   bool
	Leader  bool
}

// AddVoter adds a voting member, promotes a nonvoter, or updates a
// member's address. Leader only. A new voter counts towards the quorum at
// once, before it has caught up: add voters one at a time, or add a
// nonvoter first and promote it once it has caught up. Keep the voters
// few (3 or 5) whatever the host count, and let the rest join as
// nonvoters.
func (n *Node) AddVoter(ctx context.Context, id, addr string) error {
	f := n.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, enqueueTimeout(ctx))
	if err := waitFuture(ctx, f); err != nil {
		return raftError(fmt.Sprintf("add voter %s at %s", id, addr), err)
	}
	return nil
}

// AddNonvoter adds a member that receives the log but does not vote.
// Leader only.
func (n *Node) AddNonvoter(ctx context.Context, id, addr string) error {
	f := n.raft.AddNonvoter(raft.ServerID(id), raft.ServerAddress(addr), 0, enqueueTimeout(ctx))
	if err := waitFuture(ctx, f); err != nil {
		return raftError(fmt.Sprintf("add nonvoter %s at %s", id, addr), err)
	}
	return nil
}

// RemoveServer removes a member, voter or not. Leader only.
func (n *Node) RemoveServer(ctx context.Context, id string) error {
	f := n.raft.RemoveServer(raft.ServerID(id), 0, enqueueTimeout(ctx))
	if err := waitFuture(ctx, f); err != nil {
		return raftError("remove server "+id, err)
	}
	return nil
}

// Servers returns the latest raft configuration this node knows, marking
// the leader it knows of.
func (n *Node) Servers() ([]Server, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, raftError("raft configuration", err)
	}
	_, leader := n.raft.LeaderWithID()
	var out []Server
	for _, s := range f.Configuration().Servers {
		out = append(out, Server{
			ID:      string(s.ID),
			Name:    AgentName(string(s.ID)),
			Address: string(s.Address),
			Voter:   s.Suffrage == raft.Voter,
			Leader:  leader != "" && s.ID == leader,
		})
	}
	return out, nil
}

// HasState reports whether this node had Raft state when it opened: it
// is, or was, a member of a cluster and must never bootstrap another.
func (n *Node) HasState() bool { return n.existing }

// BootstrapCluster makes a new cluster of the given voters. Only a node
// with no state may do it, and only one node of a new cluster should
// (the agent picks it deterministically); the others learn the
// configuration from the leader it elects.
func (n *Node) BootstrapCluster(voters []Server) error {
	if n.existing {
		return fmt.Errorf("bootstrap: this node already has raft state")
	}
	var cfg raft.Configuration
	for _, s := range voters {
		cfg.Servers = append(cfg.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(s.ID), Address: raft.ServerAddress(s.Address)})
	}
	if err := n.raft.BootstrapCluster(cfg).Error(); err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	n.existing = true
	return nil
}

// DemoteVoter turns a voter into a nonvoter (leader only).
func (n *Node) DemoteVoter(ctx context.Context, id string) error {
	return waitFuture(ctx, n.raft.DemoteVoter(raft.ServerID(id), 0, enqueueTimeout(ctx)))
}

// LastContact is when this node last heard from the leader (zero when
// it is the leader or never heard).
func (n *Node) LastContact() time.Time { return n.raft.LastContact() }
