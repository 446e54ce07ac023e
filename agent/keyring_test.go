package agent

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/gpagent/gpagent/api"
	"github.com/gpagent/gpagent/internal/testcerts"
	"github.com/gpagent/gpagent/membership"
)

// TestAgent_KeyringRotation: `gpagent keyring` rotates the gossip key of
// two agents through one of them (install, use, remove), refuses a use
// before every agent holds the key, saves the keyring for a restart, and
// a reload picks up keys changed in gossip_key_file.
func TestAgent_KeyringRotation(t *testing.T) {
	ca := testcerts.New(t)
	key1, key2, key3 := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32), bytes.Repeat([]byte{3}, 32)
	keysDir := t.TempDir()
	writeKeys := func(name string, keys ...[]byte) string {
		var b bytes.Buffer
		for _, k := range keys {
			b.WriteString(base64.StdEncoding.EncodeToString(k) + "\n")
		}
		path := filepath.Join(keysDir, name)
		if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	aKeys, bKeys := writeKeys("a.keys", key1), writeKeys("b.keys", key1)
	a := startAgent(t, "a", ca, "bootstrap: true\ngossip_key_file: "+aKeys+"\n")
	b := startAgent(t, "b", ca, fmt.Sprintf("gossip_key_file: %s\njoin: [%s]\n", bKeys, a.mesh.LocalAddr()))
	waitKeyring(t, a, "both agents in gossip", func(k *api.Keyring) bool { return len(k.Agents) == 2 })

	cli := api.NewTLSClient(a.APIAddr(), &tls.Config{RootCAs: ca.Pool, Certificates: []tls.Certificate{ca.IssueCN(t, OperatorCNPrefix+"alice")}, MinVersion: tls.VersionTLS12})
	ctx := context.Background()
	fp := membership.KeyFingerprint
	change := func(op string, key []byte) (*api.Keyring, error) {
		return cli.ChangeKeyring(ctx, api.KeyringRequest{Op: op, Key: base64.StdEncoding.EncodeToString(key)})
	}
	if _, err := change(api.KeyringUse, key2); !errors.Is(err, api.ErrConflict) {
		t.Errorf("use before install: %v, want a conflict", err)
	}
	steps := []struct {
		op   string
		key  []byte
		want []string // every agent's keys, primary first
	}{
		{api.KeyringInstall, key2, []string{fp(key1), fp(key2)}},
		{api.KeyringUse, key2, []string{fp(key2), fp(key1)}},
		{api.KeyringRemove, key1, []string{fp(key2)}},
	}
	for _, s := range steps {
		k, err := change(s.op, s.key)
		if err != nil {
			t.Fatalf("%s: %v", s.op, err)
		}
		for _, ag := range k.Agents {
			if ag.Error != "" || !slices.Equal(ag.Keys, s.want) {
				t.Errorf("after %s, %s holds %v (%s), want %v", s.op, ag.Name, ag.Keys, ag.Error, s.want)
			}
		}
	}
	if _, err := change(api.KeyringRemove, key2); !errors.Is(err, api.ErrConflict) {
		t.Errorf("remove of the primary: %v, want a conflict", err)
	}
	saved, err := membership.LoadKeyFile(filepath.Join(b.cfg.DataDir, KeyringFile))
	if err != nil || len(saved) != 1 || !bytes.Equal(saved[0], key2) {
		t.Errorf("b's saved keyring %x, %v; want key2 only", saved, err)
	}
	// Gossip still carries b's health to a under the new key.
	waitKeyring(t, a, "b still alive in a's gossip", func(*api.Keyring) bool {
		m, ok := a.mesh.Member("b")
		return ok && m.Status == membership.StatusAlive
	})

	// Config management pushes key3 beside key2: each agent's reload
	// installs it.
	for _, ag := range []struct {
		a    *Agent
		file string
	}{{a, aKeys}, {b, bKeys}} {
		writeKeys(filepath.Base(ag.file), key2, key3)
		ag.a.WatchConfig(ConfigSource{File: filepath.Join(filepath.Dir(ag.a.cfg.DataDir), "agent.yaml")}, nil)
		res, err := ag.a.ReloadFile()
		if err != nil || !slices.Contains(res.Applied, "gossip_key_file") {
			t.Fatalf("reload of %s: %+v, %v", ag.a.cfg.Name, res, err)
		}
	}
	k, err := cli.Keyring(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, ag := range k.Agents {
		if want := []string{fp(key2), fp(key3)}; !slices.Equal(ag.Keys, want) {
			t.Errorf("after reload %s holds %v, want %v", ag.Name, ag.Keys, want)
		}
	}
}

func waitKeyring(t *testing.T, a *Agent, what string, cond func(*api.Keyring) bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		k := a.fanOutKeyring(context.Background(), nil)
		if cond(k) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s; last keyring %+v", what, k)
		}
		<-time.After(50 * time.Millisecond)
	}
}

func TestKeyringCheck(t *testing.T) {
	k := &api.Keyring{Agents: []api.AgentKeyring{
		{Name: "a", Keys: []string{"new", "old"}},
		{Name: "b", Keys: []string{"old"}},
		{Name: "c", Error: "not reached"},
	}}
	if got := keyringCheck(k, api.KeyringUse, "new"); !slices.Equal(got, []string{"b", "c"}) {
		t.Errorf("use blocked by %v, want b and c", got)
	}
	if got := keyringCheck(k, api.KeyringRemove, "old"); !slices.Equal(got, []string{"b"}) {
		t.Errorf("remove blocked by %v, want b", got)
	}
	if got := keyringCheck(k, api.KeyringRemove, "new"); !slices.Equal(got, []string{"a"}) {
		t.Errorf("remove blocked by %v, want a", got)
	}
}

// TestStartGossipKeys: at start the newer of gossip_key_file and the
// keyring saved at the last keyring change wins.
func TestStartGossipKeys(t *testing.T) {
	dir := t.TempDir()
	confKey, savedKey := bytes.Repeat([]byte{1}, 16), bytes.Repeat([]byte{2}, 16)
	keyFile := filepath.Join(dir, "gossip.key")
	saved := filepath.Join(dir, KeyringFile)
	for path, k := range map[string][]byte{keyFile: confKey, saved: savedKey} {
		if err := os.WriteFile(path, []byte(base64.StdEncoding.EncodeToString(k)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg := &Config{DataDir: dir, GossipKeys: [][]byte{confKey}, GossipKeyFile: keyFile}
	log := slog.New(slog.DiscardHandler)
	old, recent := time.Now().Add(-time.Hour), time.Now()
	cases := []struct {
		name              string
		keyFileAt, saveAt time.Time
		want              []byte
	}{
		{"saved keyring newer", old, recent, savedKey},
		{"key file pushed since", recent, old, confKey},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.Chtimes(keyFile, tc.keyFileAt, tc.keyFileAt); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(saved, tc.saveAt, tc.saveAt); err != nil {
				t.Fatal(err)
			}
			if got := startGossipKeys(cfg, log); len(got) != 1 || !bytes.Equal(got[0], tc.want) {
				t.Errorf("keys %x, want %x", got, tc.want)
			}
		})
	}
	if got := startGossipKeys(&Config{DataDir: dir}, log); got != nil {
		t.Errorf("no keys in the config (no encryption) gave %x", got)
	}
}
