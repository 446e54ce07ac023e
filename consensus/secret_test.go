package consensus

import (
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// TestNode_Secret: without TLS, two nodes with the cluster token
// replicate; a node with another token never receives the log; and a
// caller without the token that speaks Raft to the port (a RequestVote
// with a higher term, which would depose the leader) is refused before
// Raft reads it, leaving the term as it was.
func TestNode_Secret(t *testing.T) {
	token := func(s string) func(*Config) { return func(c *Config) { c.Secret = []byte(s) } }
	n1 := openNode(t, "n1", t.TempDir(), true, token("cluster-token"))
	n2 := openNode(t, "n2", t.TempDir(), false, token("cluster-token"))
	n3 := openNode(t, "n3", t.TempDir(), false, token("another-token"))
	waitLeading(t, n1)
	if _, err := n1.Apply(ctxTimeout(t), initCommand()); err != nil {
		t.Fatal(err)
	}
	if err := n1.AddNonvoter(ctxTimeout(t), "n2", n2.Addr()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, waitTimeout, "n2 replicates under the token", func() (bool, string) {
		return n2.Topology().ConfigVersion == 1, "not yet"
	})
	if err := n1.AddNonvoter(ctxTimeout(t), "n3", n3.Addr()); err != nil {
		t.Fatal(err)
	}
	if _, err := n1.Apply(ctxTimeout(t), allUpCommand(1)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, waitTimeout, "n2 has the second entry", func() (bool, string) {
		return n2.Topology().ConfigVersion == 2, "not yet"
	})
	if v := n3.Topology().ConfigVersion; v != 0 {
		t.Fatalf("a node with another token replicated to version %d", v)
	}

	// An anonymous Raft client: hashicorp/raft's own TCP transport.
	term := func() uint64 {
		v, _ := strconv.ParseUint(n1.raft.Stats()["term"], 10, 64)
		return v
	}
	before := term()
	anon, err := raft.NewTCPTransport("127.0.0.1:0", nil, 1, 2*time.Second, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer anon.Close()
	var resp raft.RequestVoteResponse
	err = anon.RequestVote("n1", raft.ServerAddress(n1.Addr()), &raft.RequestVoteRequest{
		RPCHeader: raft.RPCHeader{ID: []byte("intruder"), Addr: []byte(anon.LocalAddr())},
		Term:      before + 100, LastLogIndex: 1 << 40, LastLogTerm: before + 100,
	}, &resp)
	if err == nil {
		t.Fatalf("a RequestVote without the token was answered: %+v", resp)
	}
	if got := term(); got != before {
		t.Fatalf("the leader's term moved %d -> %d on a caller without the token", before, got)
	}
	// A dial with the wrong token is refused by name.
	_, err = secretDial(dialTCP, secretKey([]byte("guess")))(string(n1.Addr()), 2*time.Second)
	if err == nil || !strings.Contains(err.Error(), "cluster token") {
		t.Fatalf("a handshake with the wrong token: %v, want refused", err)
	}
}
