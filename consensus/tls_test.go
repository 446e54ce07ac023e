package consensus

import (
	"testing"

	"github.com/gpagent/gpagent/internal/testcerts"
)

// TestNode_TLS: two nodes with certificates of the cluster CA replicate
// over mutual TLS; a node with another CA's certificate never catches up.
func TestNode_TLS(t *testing.T) {
	member, stranger := testcerts.New(t), testcerts.New(t)
	mtls := func(ca *testcerts.CA) func(*Config) {
		return func(c *Config) { c.TLS = ca.MutualConfig(ca.Issue(t, "127.0.0.1")) }
	}
	n1 := openNode(t, "n1", t.TempDir(), true, mtls(member))
	n2 := openNode(t, "n2", t.TempDir(), false, mtls(member))
	n3 := openNode(t, "n3", t.TempDir(), false, mtls(stranger))
	waitLeading(t, n1)
	if _, err := n1.Apply(ctxTimeout(t), initCommand()); err != nil {
		t.Fatal(err)
	}
	if err := n1.AddNonvoter(ctxTimeout(t), "n2", n2.Addr()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, waitTimeout, "n2 replicates over TLS", func() (bool, string) {
		return n2.Topology().ConfigVersion == 1, "not yet"
	})
	// A nonvoter does not count towards the quorum, so adding the
	// stranger succeeds; it must never receive the log.
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
		t.Fatalf("a node with another CA's certificate replicated to version %d", v)
	}
}
