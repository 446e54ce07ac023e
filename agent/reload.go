package agent

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/gpagent/gpagent/api"
)

// reloadState is what a config reload needs: the file the agent was
// started from, the level of its log handler, and the runtime config the
// loops read. The config is swapped whole through an atomic pointer, so a
// loop never sees half of an old config and half of a new one.
type reloadState struct {
	mu    sync.Mutex   // one reload at a time
	src   ConfigSource // zero when the agent was not started from files
	level *slog.LevelVar
	live  atomic.Pointer[Config]
}

// live is the runtime config: the one the agent started with, with the
// fields a reload may change as last reloaded. Loops read the fields a
// reload may change through it, at each use.
func (a *Agent) live() *Config {
	if c := a.reload.live.Load(); c != nil {
		return c
	}
	return a.cfg
}

// WatchConfig tells the agent which files to re-read on a reload, and the
// level of its log handler (nil: the level is left alone).
func (a *Agent) WatchConfig(src ConfigSource, level *slog.LevelVar) {
	a.reload.mu.Lock()
	defer a.reload.mu.Unlock()
	a.reload.src, a.reload.level = src, level
}

// ErrNoConfigFile: the agent was not started from a file, so there is
// nothing to re-read.
var ErrNoConfigFile = errors.New("the agent was not started from a config file")

// ReloadFile re-reads the config files and applies them. A file that does
// not parse or validate is refused whole: the running config stays, and
// the one error line names the file and the field.
func (a *Agent) ReloadFile() (*api.ReloadResult, error) {
	a.reload.mu.Lock()
	src := a.reload.src
	a.reload.mu.Unlock()
	if src == (ConfigSource{}) {
		return nil, ErrNoConfigFile
	}
	cfg, err := src.Load()
	if err != nil {
		a.log.Error("config reload refused: the running config stays", "err", err)
		return nil, api.Errorf(api.CodeInvalid, "%v", err)
	}
	return a.Reload(cfg)
}

// Reload applies the fields of next that can change while the agent runs
// and names, in one log line, those that differ but need a restart (they
// are left as they were). A combination the running agent cannot take is
// refused whole.
func (a *Agent) Reload(next *Config) (*api.ReloadResult, error) {
	a.reload.mu.Lock()
	defer a.reload.mu.Unlock()
	cur := a.live()
	merged := *cur
	res := &api.ReloadResult{Applied: []string{}, NeedRestart: []string{}}
	for _, f := range reloadFields {
		if f.same(cur, next) {
			continue
		}
		if f.apply == nil {
			res.NeedRestart = append(res.NeedRestart, f.name)
			continue
		}
		f.apply(&merged, next)
		res.Applied = append(res.Applied, f.name)
	}
	// The lease is renewed by reports sent every probe_interval; the
	// lease itself needs a restart, so check the new interval against
	// the running lease.
	if merged.Lease < 2*merged.ProbeInterval {
		err := fmt.Errorf("probe_interval: %s is more than half the running lease (%s): reports renew it", merged.ProbeInterval, merged.Lease)
		a.log.Error("config reload refused: the running config stays", "config", a.reload.src.String(), "err", err)
		return nil, api.Errorf(api.CodeInvalid, "%v", err)
	}
	rotate, err := a.reloadTLS(cur, next, &merged, res)
	if err != nil {
		a.log.Error("config reload refused: the running config stays", "config", a.reload.src.String(), "err", err)
		return nil, api.Errorf(api.CodeInvalid, "%v", err)
	}
	keys := a.reloadGossip(cur, next, &merged, res)
	if rotate != nil {
		a.tls.cert.Store(rotate)
	}
	if keys != nil {
		if err := a.mesh.SetKeys(keys); err != nil {
			a.log.Error("gossip keys from gossip_key_file not all applied", "err", err)
		} else if err := a.saveKeyring(); err != nil {
			a.log.Error("gossip keyring changed but not saved: a restart goes back to gossip_key_file", "err", err)
		}
	}
	a.reload.live.Store(&merged)
	if a.reload.level != nil {
		a.reload.level.Set(merged.LogLevel)
	}
	if len(res.NeedRestart) > 0 {
		a.log.Warn("config fields changed that need a restart; they are left as they were", "config", a.reload.src.String(), "fields", res.NeedRestart)
	}
	a.log.Info("config reloaded", "config", a.reload.src.String(), "applied", res.Applied)
	return res, nil
}

// reloadField is one config field as a reload sees it: how to tell it
// changed and, when it can change while the agent runs, how to apply it.
type reloadField struct {
	name  string // as in the config file
	same  func(a, b *Config) bool
	apply func(dst, src *Config) // nil: needs a restart
}

func eq(get func(*Config) any) func(a, b *Config) bool {
	return func(a, b *Config) bool { return get(a) == get(b) }
}

// reloadFields lists every field of Config but the TLS certificate and
// key (reloadTLS) and the gossip keys (reloadGossip). The live ones are read
// through Agent.live at each use; the others are baked into listeners,
// Raft, gossip, the supervisor or the lease at start. probe_timeout is
// the supervisor's connect and query timeout, set when it is built.
var reloadFields = []reloadField{
	{"log_level", eq(func(c *Config) any { return c.LogLevel }), func(d, s *Config) { d.LogLevel = s.LogLevel }},
	{"probe_interval", eq(func(c *Config) any { return c.ProbeInterval }), func(d, s *Config) { d.ProbeInterval = s.ProbeInterval }},
	{"probe_retries", eq(func(c *Config) any { return c.ProbeRetries }), func(d, s *Config) { d.ProbeRetries = s.ProbeRetries }},
	{"replication_stall_timeout", eq(func(c *Config) any { return c.ReplicationStallTimeout }), func(d, s *Config) { d.ReplicationStallTimeout = s.ReplicationStallTimeout }},
	{"auto_recover", eq(func(c *Config) any { return c.AutoRecover }), func(d, s *Config) { d.AutoRecover = s.AutoRecover }},
	{"remove_left_after", eq(func(c *Config) any { return c.RemoveLeftAfter }), func(d, s *Config) { d.RemoveLeftAfter = s.RemoveLeftAfter }},
	{"probe_timeout", eq(func(c *Config) any { return c.ProbeTimeout }), nil},
	{"lease", eq(func(c *Config) any { return c.Lease }), nil},
	{"log_format", eq(func(c *Config) any { return c.LogFormat }), nil},
	{"name", eq(func(c *Config) any { return c.Name }), nil},
	{"address", eq(func(c *Config) any { return c.Address }), nil},
	{"data_dir", eq(func(c *Config) any { return c.DataDir }), nil},
	{"api_addr", eq(func(c *Config) any { return c.APIAddr }), nil},
	{"raft_addr", eq(func(c *Config) any { return c.RaftAddr }), nil},
	{"gossip_addr", eq(func(c *Config) any { return c.GossipAddr }), nil},
	{"bootstrap", eq(func(c *Config) any { return c.Bootstrap }), nil},
	{"bootstrap_expect", eq(func(c *Config) any { return c.BootstrapExpect }), nil},
	{"voters", eq(func(c *Config) any { return c.Voters }), nil},
	{"join", func(a, b *Config) bool { return slices.Equal(a.Join, b.Join) }, nil},
	{"tls.ca_file", eq(func(c *Config) any { return c.TLSCAFile }), nil},
	{"token_file", eq(func(c *Config) any { return c.Token }), nil},
	{"insecure", eq(func(c *Config) any { return c.Insecure }), nil},
	{"stop_instances_on_exit", eq(func(c *Config) any { return c.StopInstancesOnExit }), nil},
	{"enable_debug", eq(func(c *Config) any { return c.EnableDebug }), nil},
	{"postgres.bin_dir", eq(func(c *Config) any { return c.BinDir }), nil},
	{"postgres.os_user", eq(func(c *Config) any { return c.OSUser }), nil},
	{"postgres.superuser", eq(func(c *Config) any { return c.SuperUser }), nil},
	{"postgres.superuser_password", eq(func(c *Config) any { return c.SuperPassword }), nil},
	{"postgres.replication_user", eq(func(c *Config) any { return c.ReplUser }), nil},
	{"postgres.replication_password", eq(func(c *Config) any { return c.ReplPassword }), nil},
	{"raft_snapshot_threshold", eq(func(c *Config) any { return c.RaftSnapshotThreshold }), nil},
	{"raft_snapshot_interval", eq(func(c *Config) any { return c.RaftSnapshotInterval }), nil},
	{"postgres.wal_keep_size", eq(func(c *Config) any { return c.WalKeepSize }), nil},
}

// postReload answers POST /v1/reload: this agent re-reads its own config
// file, as on SIGHUP.
func (a *Agent) postReload(r *http.Request) (any, error) {
	res, err := a.ReloadFile()
	if errors.Is(err, ErrNoConfigFile) {
		return nil, api.Errorf(api.CodeInvalid, "agent %s: %v", a.cfg.Name, err)
	}
	return res, err
}

// reloadTLS re-reads the agent's certificate and key, so that files
// rotated in place (or moved) are served from the next handshake on. It
// returns the certificate to swap in, or nil when it is unchanged or
// needs a restart (TLS turned on or off, another CA file: named in res).
// A pair that does not load, or that the running CA does not vouch for,
// refuses the reload.
func (a *Agent) reloadTLS(cur, next, merged *Config, res *api.ReloadResult) (*tls.Certificate, error) {
	pathsChanged := cur.TLSCertFile != next.TLSCertFile || cur.TLSKeyFile != next.TLSKeyFile
	if a.tls == nil || next.TLSCertFile == "" || cur.TLSCAFile != next.TLSCAFile {
		if cur.TLSCertFile != next.TLSCertFile {
			res.NeedRestart = append(res.NeedRestart, "tls.cert_file")
		}
		if cur.TLSKeyFile != next.TLSKeyFile {
			res.NeedRestart = append(res.NeedRestart, "tls.key_file")
		}
		return nil, nil
	}
	cert, err := a.tls.loadPair(next.TLSCertFile, next.TLSKeyFile)
	if err != nil {
		return nil, err
	}
	old := a.tls.cert.Load()
	if !pathsChanged && bytes.Equal(old.Certificate[0], cert.Certificate[0]) {
		return nil, nil
	}
	merged.TLSCertFile, merged.TLSKeyFile = next.TLSCertFile, next.TLSKeyFile
	res.Applied = append(res.Applied, "tls.cert_file", "tls.key_file")
	return cert, nil
}

// reloadGossip returns the keys the gossip keyring is to hold when
// gossip_key_file's keys changed (nil: unchanged, or it needs a restart,
// named in res). The change is made as `gpagent keyring` makes it, one
// host at a time: so the file pushed to every host should first add the
// new key second, then put it first, then drop the old one, each push
// reloaded everywhere before the next. Turning encryption on or off
// needs a restart: memberlist cannot change that while it runs.
func (a *Agent) reloadGossip(cur, next, merged *Config, res *api.ReloadResult) [][]byte {
	if slices.EqualFunc(cur.GossipKeys, next.GossipKeys, bytes.Equal) {
		return nil
	}
	if a.mesh == nil || a.mesh.Keys() == nil || len(next.GossipKeys) == 0 {
		res.NeedRestart = append(res.NeedRestart, "gossip_key_file")
		return nil
	}
	merged.GossipKeys, merged.GossipKeyFile = next.GossipKeys, next.GossipKeyFile
	res.Applied = append(res.Applied, "gossip_key_file")
	return next.GossipKeys
}
