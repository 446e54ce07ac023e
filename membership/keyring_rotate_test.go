package membership

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"
)

// TestKeyring_Rotate: the rotation `gpagent keyring` drives, on a live
// three-node mesh: install the new key everywhere, use it everywhere,
// remove the old one. The mesh stays whole throughout, and afterwards a
// node with only the new key joins while one with only the old cannot.
func TestKeyring_Rotate(t *testing.T) {
	oldKey, newKey := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	nodes := startCluster(t, []string{"a", "b", "c"}, withKeys(oldKey))
	steps := []struct {
		name string
		do   func(m *Membership) error
	}{
		{"install", func(m *Membership) error { return m.InstallKey(newKey) }},
		{"use", func(m *Membership) error { return m.UseKey(newKey) }},
		{"remove", func(m *Membership) error { return m.RemoveKey(oldKey) }},
	}
	for _, s := range steps {
		for _, n := range nodes {
			if err := s.do(n); err != nil {
				t.Fatalf("%s on %s: %v", s.name, n.name, err)
			}
		}
	}
	for _, n := range nodes {
		if keys := n.Keys(); len(keys) != 1 || !bytes.Equal(keys[0], newKey) {
			t.Errorf("%s keys %x, want only the new one", n.name, keys)
		}
	}
	d := startNode(t, "d", withKeys(newKey))
	joinOK(t, d, nodes[1])
	waitFor(t, 5*time.Second, "a sees d alive", func() (bool, string) {
		return countStatus(nodes[0], StatusAlive) == 4, statuses(nodes[0])
	})
	x := startNode(t, "x", withKeys(oldKey))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if n, err := x.Join(ctx, []string{nodes[0].LocalAddr()}); err == nil {
		t.Errorf("a node with the removed key joined %d", n)
	}
}

func TestKeyring_Refusals(t *testing.T) {
	key1, key2, key3 := bytes.Repeat([]byte{1}, 16), bytes.Repeat([]byte{2}, 16), bytes.Repeat([]byte{3}, 16)
	plain := startNode(t, "plain")
	if err := plain.InstallKey(key1); !errors.Is(err, ErrNotEncrypted) {
		t.Errorf("install on unencrypted gossip: %v, want ErrNotEncrypted", err)
	}
	m := startNode(t, "m", withKeys(key1))
	if err := m.UseKey(key2); err == nil {
		t.Error("use of a key not installed succeeded")
	}
	if err := m.RemoveKey(key1); err == nil {
		t.Error("removing the primary succeeded")
	}
	if err := m.InstallKey([]byte("short")); err == nil {
		t.Error("a 5-byte key was installed")
	}
	if err := m.SetKeys([][]byte{key3, key2}); err != nil {
		t.Fatal(err)
	}
	if keys := m.Keys(); len(keys) != 2 || !bytes.Equal(keys[0], key3) || !bytes.Equal(keys[1], key2) {
		t.Errorf("after SetKeys: %x, want key3 then key2", keys)
	}
	if KeyFingerprint(key1) == KeyFingerprint(key2) || len(KeyFingerprint(key1)) != 16 {
		t.Errorf("fingerprints %s %s", KeyFingerprint(key1), KeyFingerprint(key2))
	}
}
