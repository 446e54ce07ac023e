package consensus

import (
	"context"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/gpagent/gpagent/topology"
)

// TestVoteGuard_WipedNodeDoesNotVote: a voter whose data dir was wiped
// comes back at its old address with an empty log and a new server id.
// A stale candidate (its log behind what the cluster committed) asks it
// for a vote: it must refuse, or the candidate could win with the wiped
// voter's vote and lose a committed entry. (Raft refuses votes while it
// knows a leader: the candidate asks once the others are gone and the
// wiped node's heartbeat timeout has passed, as after a leader crash.)
func TestVoteGuard_WipedNodeDoesNotVote(t *testing.T) {
	dirs := map[string]string{"n1": t.TempDir(), "n2": t.TempDir(), "n3": t.TempDir()}
	c := cluster{"n1": openNode(t, "n1", dirs["n1"], true, nil)}
	waitLeading(t, c["n1"])
	for _, id := range []string{"n2", "n3"} {
		c[id] = openNode(t, id, dirs[id], false, nil)
		c.onLeader(t, "add voter "+id, func(ctx context.Context, n *Node) error {
			return n.AddVoter(ctx, c[id].ID(), c[id].Addr())
		})
	}
	c.applyVersion(t, 1, func(uint64) topology.Command { return initCommand() })
	c.waitVersion(t, 1)
	for id, n := range c {
		if !strings.HasPrefix(n.ID(), id+"#") {
			t.Fatalf("server id of %s is %q, want %s#<random>", id, n.ID(), id)
		}
	}

	// Wipe n3 and start it again on the same address.
	n3 := c["n3"]
	oldID, addr := n3.ID(), n3.Addr()
	if err := n3.Close(); err != nil {
		t.Fatal(err)
	}
	delete(c, "n3")
	if err := os.RemoveAll(dirs["n3"]); err != nil {
		t.Fatal(err)
	}
	wiped := openNode(t, "n3", t.TempDir(), false, func(cfg *Config) { cfg.BindAddr = addr })
	if wiped.ID() == oldID {
		t.Fatalf("the wiped node came back with its old server id %q", oldID)
	}

	// A stale candidate: a far higher term, no log at all.
	client, err := raft.NewTCPTransport("127.0.0.1:0", nil, 1, 5*time.Second, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ask := func() *raft.RequestVoteResponse {
		req := &raft.RequestVoteRequest{
			RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("stale"), Addr: []byte(client.LocalAddr())},
			Term:      1000, LastLogIndex: 0, LastLogTerm: 0,
		}
		var resp raft.RequestVoteResponse
		if err := client.RequestVote(raft.ServerID(oldID), raft.ServerAddress(addr), req, &resp); err != nil {
			t.Fatalf("request vote: %v", err)
		}
		return &resp
	}
	for id, n := range c {
		if err := n.Close(); err != nil {
			t.Fatalf("close %s: %v", id, err)
		}
	}
	waitFor(t, waitTimeout, "the wiped node knows no leader", func() (bool, string) {
		l, _ := wiped.Leader()
		return l == "", l
	})
	if resp := ask(); resp.Granted {
		t.Fatalf("the wiped node (empty log, new id %s) granted its vote to a stale candidate: %+v", wiped.ID(), resp)
	}
}
