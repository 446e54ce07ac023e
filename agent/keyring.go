package agent

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/gpagent/gpagent/api"
	"github.com/gpagent/gpagent/membership"
	"github.com/gpagent/gpagent/watchdog"
)

// A keyring change is fanned out over the API by the agent that receives
// it, to every agent gossip knows of, as Consul's keyring does through a
// serf query. Not a Raft command, for three reasons: the keys would be
// written into the Raft log and snapshots of every host and sent to each
// new member for as long as the log is kept; an agent that gossips but
// cannot reach a quorum (the case gossip is for) would never apply it;
// and a key must be installed on every member before any uses it, which
// a command each agent applies on its own schedule cannot promise. The
// answer names every agent and what it holds, so an operator sees the
// ones a change missed and runs it again (every step is idempotent).

// KeyringFile is where an agent keeps its gossip keys after a keyring
// change, so that a restart does not bring back a key the cluster has
// removed. Same format as a gossip key file, primary first.
const KeyringFile = "gossip.keyring"

// keyringTimeout bounds the call to each agent.
const keyringTimeout = 10 * time.Second

// startGossipKeys returns the keys gossip starts with: those of
// gossip_key_file, or those this agent saved after its last keyring
// change when that file is the newer (the last change wins, whichever
// way it was made). No keys in the config means no encryption.
func startGossipKeys(cfg *Config, log *slog.Logger) [][]byte {
	if len(cfg.GossipKeys) == 0 {
		return nil
	}
	path := filepath.Join(cfg.DataDir, KeyringFile)
	saved, err := os.Stat(path)
	if err != nil {
		return cfg.GossipKeys
	}
	if conf, err := os.Stat(cfg.GossipKeyFile); err == nil && conf.ModTime().After(saved.ModTime()) {
		return cfg.GossipKeys
	}
	keys, err := membership.LoadKeyFile(path)
	if err != nil {
		log.Warn("saved gossip keyring unreadable; starting with gossip_key_file's keys", "path", path, "err", err)
		return cfg.GossipKeys
	}
	log.Info("gossip keys from the keyring saved at the last keyring change (newer than gossip_key_file)", "path", path, "primary", membership.KeyFingerprint(keys[0]))
	return keys
}

// saveKeyring writes the mesh's keys to KeyringFile (mode 0600, renamed
// into place so a crash leaves the old file or the new one).
func (a *Agent) saveKeyring() error {
	var buf bytes.Buffer
	buf.WriteString("# gossip keys saved by gpagent after a keyring change; the first is the primary\n")
	for _, k := range a.mesh.Keys() {
		buf.WriteString(base64.StdEncoding.EncodeToString(k) + "\n")
	}
	path := filepath.Join(a.cfg.DataDir, KeyringFile)
	if err := watchdog.WriteFileAtomic(path, buf.Bytes()); err != nil {
		return fmt.Errorf("save gossip keyring: %w", err)
	}
	return nil
}

// parseKeyringRequest checks the op and decodes the key.
func parseKeyringRequest(req api.KeyringRequest) ([]byte, error) {
	switch req.Op {
	case api.KeyringInstall, api.KeyringUse, api.KeyringRemove:
	default:
		return nil, api.Errorf(api.CodeInvalid, "op %q is not install, use or remove", req.Op)
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(req.Key))
	if err != nil {
		return nil, api.Errorf(api.CodeInvalid, "the key is not valid base64 (make one with: openssl rand -base64 32)")
	}
	if err := memberlist.ValidateKey(key); err != nil {
		return nil, api.Errorf(api.CodeInvalid, "the key is %d bytes, want 16, 24 or 32", len(key))
	}
	return key, nil
}

// localKeyring applies req (nil: none) to this agent's keyring and
// returns what it holds.
func (a *Agent) localKeyring(req *api.KeyringRequest) (*api.AgentKeyring, error) {
	if req != nil {
		key, err := parseKeyringRequest(*req)
		if err != nil {
			return nil, err
		}
		switch req.Op {
		case api.KeyringInstall:
			err = a.mesh.InstallKey(key)
		case api.KeyringUse:
			err = a.mesh.UseKey(key)
		case api.KeyringRemove:
			err = a.mesh.RemoveKey(key)
		}
		if err != nil {
			return nil, api.Errorf(api.CodeConflict, "%v", err)
		}
		if err := a.saveKeyring(); err != nil {
			a.log.Error("gossip keyring changed but not saved: a restart goes back to gossip_key_file", "err", err)
		}
		a.log.Info("gossip keyring changed", "op", req.Op, "key", membership.KeyFingerprint(key))
	}
	out := &api.AgentKeyring{Name: a.cfg.Name, Keys: []string{}}
	for _, k := range a.mesh.Keys() {
		out.Keys = append(out.Keys, membership.KeyFingerprint(k))
	}
	return out, nil
}

func (a *Agent) getLocalKeyring(r *http.Request) (any, error) { return a.localKeyring(nil) }

func (a *Agent) postLocalKeyring(r *http.Request) (any, error) {
	var req api.KeyringRequest
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	return a.localKeyring(&req)
}

func (a *Agent) getKeyring(r *http.Request) (any, error) {
	return a.fanOutKeyring(r.Context(), nil), nil
}

// postKeyring applies a change on every agent. use and remove are
// refused, before anything changes, where they would split the mesh: a
// key becomes the primary only once every agent holds it, and a key is
// removed only once no agent still encrypts with it.
func (a *Agent) postKeyring(r *http.Request) (any, error) {
	var req api.KeyringRequest
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	key, err := parseKeyringRequest(req)
	if err != nil {
		return nil, err
	}
	if req.Op != api.KeyringInstall {
		fp := membership.KeyFingerprint(key)
		if missing := keyringCheck(a.fanOutKeyring(r.Context(), nil), req.Op, fp); len(missing) > 0 {
			if req.Op == api.KeyringUse {
				return nil, api.Errorf(api.CodeConflict, "key %s is not installed on %s: run gpagent keyring --install first", fp, strings.Join(missing, ", "))
			}
			return nil, api.Errorf(api.CodeConflict, "key %s is still the primary on %s: run gpagent keyring --use with the new key first", fp, strings.Join(missing, ", "))
		}
	}
	return a.fanOutKeyring(r.Context(), &req), nil
}

// keyringCheck returns the agents that stop op on the key of fingerprint
// fp: for use, those that do not hold it (or could not be asked); for
// remove, those whose primary it is.
func keyringCheck(k *api.Keyring, op, fp string) []string {
	var out []string
	for _, ag := range k.Agents {
		switch {
		case op == api.KeyringUse && (ag.Error != "" || !slices.Contains(ag.Keys, fp)):
			out = append(out, ag.Name)
		case op == api.KeyringRemove && len(ag.Keys) > 0 && ag.Keys[0] == fp:
			out = append(out, ag.Name)
		}
	}
	return out
}

// fanOutKeyring applies req (nil: lists) on every agent gossip knows of
// but those that left, at once, and returns their answers by name.
func (a *Agent) fanOutKeyring(ctx context.Context, req *api.KeyringRequest) *api.Keyring {
	members := a.mesh.Members()
	out := &api.Keyring{Agents: make([]api.AgentKeyring, 0, len(members))}
	var mu sync.Mutex
	var wg sync.WaitGroup
	add := func(k api.AgentKeyring) {
		mu.Lock()
		out.Agents = append(out.Agents, k)
		mu.Unlock()
	}
	for _, m := range members {
		switch {
		case m.Status == membership.StatusLeft:
			continue
		case m.Name == a.cfg.Name:
			k, err := a.localKeyring(req)
			if err != nil {
				add(api.AgentKeyring{Name: m.Name, Error: err.Error()})
			} else {
				add(*k)
			}
		case m.Status == membership.StatusDead:
			add(api.AgentKeyring{Name: m.Name, Error: "not reached: dead in gossip"})
		default:
			wg.Go(func() {
				cctx, cancel := context.WithTimeout(ctx, keyringTimeout)
				defer cancel()
				k, err := a.peerClient(m.Meta.APIAddr).LocalKeyring(cctx, req)
				if err != nil {
					add(api.AgentKeyring{Name: m.Name, Error: err.Error()})
					return
				}
				k.Name = m.Name
				add(*k)
			})
		}
	}
	wg.Wait()
	slices.SortFunc(out.Agents, func(x, y api.AgentKeyring) int { return strings.Compare(x.Name, y.Name) })
	return out
}
