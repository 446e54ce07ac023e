// Package agent wires the pieces of the daemon together: the Raft node, the
// local supervisor, the leader's reconcile loop, the local executor that
// carries out this host's part of the topology, and the HTTP API.
package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/gpagent/gpagent/consensus"
)

// fileConfig is the agent config file as the operator writes it. Decoding
// is strict: an unknown field is an error, not a silently ignored typo.
type fileConfig struct {
	Name                string        `yaml:"name"`
	Address             string        `yaml:"address"`
	DataDir             string        `yaml:"data_dir"`
	APIAddr             string        `yaml:"api_addr"`
	RaftAddr            string        `yaml:"raft_addr"`
	Bootstrap           bool          `yaml:"bootstrap"`
	BootstrapExpect     int           `yaml:"bootstrap_expect"`
	Voters              int           `yaml:"voters"`
	Server              *bool         `yaml:"server"`
	RemoveLeftAfter     time.Duration `yaml:"remove_left_after"`
	GossipAddr          string        `yaml:"gossip_addr"`
	Join                []string      `yaml:"join"`
	Servers             []string      `yaml:"servers"`
	GossipKeyFile       string        `yaml:"gossip_key_file"`
	TLS                 tlsFileConfig `yaml:"tls"`
	TokenFile           string        `yaml:"token_file"`
	Insecure            bool          `yaml:"insecure"`
	StopInstancesOnExit bool          `yaml:"stop_instances_on_exit"`
	EnableDebug         bool          `yaml:"enable_debug"`
	ProbeInterval       time.Duration `yaml:"probe_interval"`
	ProbeTimeout        time.Duration `yaml:"probe_timeout"`
	ProbeRetries        int           `yaml:"probe_retries"`
	ReplicationStall    time.Duration `yaml:"replication_stall_timeout"`
	AutoRecover         string        `yaml:"auto_recover"`
	Lease               time.Duration `yaml:"lease"`
	LogLevel            string        `yaml:"log_level"`
	LogFormat           string        `yaml:"log_format"`
	// Pointers: an explicit 0 is refused, not taken for "unset".
	RaftSnapshotThreshold *int           `yaml:"raft_snapshot_threshold"`
	RaftSnapshotInterval  *time.Duration `yaml:"raft_snapshot_interval"`
	Postgres              postgresConfig `yaml:"postgres"`
	// token is read from TokenFile (configsource.go); never inline.
	token string `yaml:"-"`
}

// tlsFileConfig turns on TLS for Raft and the HTTP API (mutual between
// agents) when its three files are given.
type tlsFileConfig struct {
	CAFile   string `yaml:"ca_file"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

type postgresConfig struct {
	BinDir              string `yaml:"bin_dir"`
	OSUser              string `yaml:"os_user"`
	SuperUser           string `yaml:"superuser"`
	SuperPassword       string `yaml:"superuser_password"`
	ReplicationUser     string `yaml:"replication_user"`
	ReplicationPassword string `yaml:"replication_password"`
	// The passwords may be read from files instead (configsource.go).
	SuperPasswordFile       string `yaml:"superuser_password_file"`
	ReplicationPasswordFile string `yaml:"replication_password_file"`
	WalKeepSize             string `yaml:"wal_keep_size"`
}

// Config is the validated, immutable runtime configuration of one agent.
type Config struct {
	Name      string
	Address   string // where this host's instances listen
	DataDir   string
	APIAddr   string
	RaftAddr  string
	Bootstrap bool
	// BootstrapExpect: a new cluster starts once this many agents see
	// each other; the one with the lowest name bootstraps it.
	BootstrapExpect int
	// Voters is how many agents vote in Raft (3 or 5); the rest follow
	// as nonvoters, however many hosts there are.
	Voters int
	// Client: this agent holds no Raft log and is never a Raft member
	// (server: false). It learns the topology by a blocking query to the
	// servers and reports to the leader like any agent; the few servers
	// (server: true, the default) hold the log. Consul's and Nomad's
	// clients: a thousand hosts do not make a thousand Raft replicas.
	Client     bool
	GossipAddr string
	Join       []string
	// Servers: the servers' API addresses, for a client (server: false)
	// that finds them without gossip. A client with servers and no join
	// joins no gossip pool: the servers learn it from its reports, and it
	// learns the servers from their answers (Nomad's clients). A thousand
	// clients gossiping cost every host a thousand members' probes and
	// state exchanges for a failure detector the lease already is.
	Servers    []string
	GossipKeys [][]byte
	// GossipKeyFile is where GossipKeys were read from (startGossipKeys
	// compares its age with the keyring saved by `gpagent keyring`).
	GossipKeyFile string
	// TLS files; all three or none.
	TLSCAFile, TLSCertFile, TLSKeyFile string
	// Token is the cluster's shared secret (token_file): a bearer token
	// that passes every guard of the API (auth.go). "" without one.
	Token string
	// Insecure lets the agent start without TLS or a token, or without a
	// gossip key: anyone who reaches it can then change the cluster.
	Insecure            bool
	StopInstancesOnExit bool
	// EnableDebug serves Go's profiles under /debug/pprof/ on the API
	// address (off by default: they show the process's internals).
	EnableDebug   bool
	ProbeInterval time.Duration
	ProbeTimeout  time.Duration
	ProbeRetries  int
	// ReplicationStallTimeout: a mirror whose replication makes no
	// progress this long is treated as lost, so commits do not hang.
	ReplicationStallTimeout time.Duration
	// RemoveLeftAfter: the leader removes from Raft an agent that left
	// gossip (a graceful stop) only once it has been gone this long; a
	// restart must not take it out of the cluster.
	RemoveLeftAfter time.Duration
	// Lease: how long this agent keeps its primaries writable without
	// reaching the leader (safety rule 5); LeaseMargin is what the leader
	// adds before promoting on a lost host, for clock rate drift.
	Lease       time.Duration
	LeaseMargin time.Duration
	// AutoRecover: a failed instance whose agent reports again is
	// rewound and rejoined as a mirror without an operator (the leader's
	// setting counts). Off by default, as in Greenplum.
	AutoRecover bool
	LogLevel    slog.Level
	LogFormat   string // LogFormatText or LogFormatJSON
	// RaftSnapshotThreshold and RaftSnapshotInterval (Consul's names):
	// Raft snapshots its log once this many entries have been appended
	// since the last snapshot, checking every interval (raft adds up to
	// one interval of jitter). Default: hashicorp/raft's, 8192 entries
	// and 120 s.
	RaftSnapshotThreshold uint64
	RaftSnapshotInterval  time.Duration
	BinDir                string
	OSUser                string
	SuperUser             string
	SuperPassword         string
	ReplUser              string
	ReplPassword          string
	WalKeepSize           string
}

// Defaults, beside Greenplum's FTS for comparison: gp_fts_probe_interval
// is 60 s, gp_fts_probe_timeout 20 s, gp_fts_probe_retries 5. A dead
// postmaster is seen at once without probes (its exit is watched); probes
// only catch a hung one. The first failed probe comes within
// probe_interval + probe_timeout of the hang, the others are retried at
// once, so a hang is declared after about probe_interval + probe_retries
// x probe_timeout: 1 s + 1.5 s with these. A probe is one short query
// that answers in milliseconds on a healthy LAN: 500 ms is a wide margin,
// and it takes three misses in a row to act.
const (
	DefaultAPIAddr          = "127.0.0.1:7070"
	DefaultRaftAddr         = "127.0.0.1:7071"
	DefaultProbeInterval    = time.Second
	DefaultProbeTimeout     = 500 * time.Millisecond
	DefaultProbeRetries     = 3
	DefaultReplicationStall = 5 * time.Second
	// DefaultLease: an agent cut off fences its primaries after 3 s; the
	// leader promotes their mirrors 4 s after it last heard from it.
	DefaultLease = 3 * time.Second
	// DefaultVoters: three voters survive the loss of one host.
	DefaultVoters = 3
	// DefaultRemoveLeftAfter: longer than any restart, a host reboot
	// included; an agent taken away for good stops counting as a Raft
	// member after it (a voter is replaced by a healthy nonvoter sooner,
	// as a dead one is).
	DefaultRemoveLeftAfter = time.Hour
)

// WatchdogGrace is how long past the lease the fence watchdog waits
// before it kills the primaries of a stopped (SIGSTOP) or exited agent:
// half the leader's margin, so that the kill lands with the other half
// to spare before the leader may promote their mirrors.
func (c *Config) WatchdogGrace() time.Duration { return c.LeaseMargin / 2 }

// WatchdogLiveGrace is how long past the lease a running agent has to
// record its own fence before the watchdog kills the primaries it has
// not: three quarters of the leader's margin. A fence is a reload of
// each primary, which takes hundreds of milliseconds on a loaded host;
// the last quarter is left for the kill to land before the leader may
// promote.
func (c *Config) WatchdogLiveGrace() time.Duration { return c.LeaseMargin * 3 / 4 }

// The log formats: key=value text, or one JSON object a line.
const (
	LogFormatText = "text"
	LogFormatJSON = "json"
)

// LoadConfig reads and validates the config file at path. Every error
// names the file and the field.
func LoadConfig(path string) (*Config, error) {
	return ConfigSource{File: path}.Load()
}

// ParseConfig decodes and validates a config document (the files its
// *_file fields name are read by LoadConfig).
func ParseConfig(data []byte) (*Config, error) {
	cfg, _, err := parseConfig(data)
	return cfg, err
}

func parseConfig(data []byte) (*Config, string, error) {
	var fc fileConfig
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&fc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, "", errors.New("empty config")
		}
		return nil, "", configError(data, err)
	}
	if fc.Postgres.SuperPasswordFile != "" || fc.Postgres.ReplicationPasswordFile != "" {
		return nil, "", errors.New("postgres: *_password_file fields are read by LoadConfig only")
	}
	cfg, err := fc.validate()
	return cfg, fc.GossipKeyFile, err
}

func (fc fileConfig) validate() (*Config, error) {
	c := &Config{
		Name:                fc.Name,
		Address:             fc.Address,
		DataDir:             fc.DataDir,
		APIAddr:             orDefault(fc.APIAddr, DefaultAPIAddr),
		RaftAddr:            orDefault(fc.RaftAddr, DefaultRaftAddr),
		Bootstrap:           fc.Bootstrap,
		BootstrapExpect:     fc.BootstrapExpect,
		Voters:              fc.Voters,
		Client:              fc.Server != nil && !*fc.Server,
		RemoveLeftAfter:     fc.RemoveLeftAfter,
		GossipAddr:          fc.GossipAddr,
		Join:                fc.Join,
		Servers:             fc.Servers,
		TLSCAFile:           fc.TLS.CAFile,
		TLSCertFile:         fc.TLS.CertFile,
		TLSKeyFile:          fc.TLS.KeyFile,
		Token:               fc.token,
		Insecure:            fc.Insecure,
		StopInstancesOnExit: fc.StopInstancesOnExit,
		EnableDebug:         fc.EnableDebug,
		ProbeInterval:       fc.ProbeInterval,
		ProbeTimeout:        fc.ProbeTimeout,
		ProbeRetries:        fc.ProbeRetries,
		BinDir:              orDefault(fc.Postgres.BinDir, "/usr/lib/postgresql/15/bin"),
		OSUser:              fc.Postgres.OSUser,
		SuperUser:           orDefault(fc.Postgres.SuperUser, "gpadmin"),
		SuperPassword:       fc.Postgres.SuperPassword,
		ReplUser:            orDefault(fc.Postgres.ReplicationUser, "replicator"),
		ReplPassword:        fc.Postgres.ReplicationPassword,
		WalKeepSize:         orDefault(fc.Postgres.WalKeepSize, "1GB"),
	}
	if c.Name == "" {
		host, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("name: not set and the hostname is unknown: %w", err)
		}
		c.Name = host
	}
	if c.Address == "" {
		c.Address = c.Name
	}
	if c.Voters == 0 {
		c.Voters = DefaultVoters
	}
	if c.RemoveLeftAfter == 0 {
		c.RemoveLeftAfter = DefaultRemoveLeftAfter
	}
	if c.GossipAddr == "" {
		c.GossipAddr = net.JoinHostPort(c.Address, "7946")
	}
	if c.ProbeInterval == 0 {
		c.ProbeInterval = DefaultProbeInterval
	}
	if c.ProbeTimeout == 0 {
		c.ProbeTimeout = DefaultProbeTimeout
	}
	if c.ProbeRetries == 0 {
		c.ProbeRetries = DefaultProbeRetries
	}
	c.Lease = fc.Lease
	if c.Lease == 0 {
		c.Lease = DefaultLease
	}
	c.LeaseMargin = c.Lease / 3
	c.ReplicationStallTimeout = fc.ReplicationStall
	if c.ReplicationStallTimeout == 0 {
		c.ReplicationStallTimeout = DefaultReplicationStall
	}
	switch {
	case strings.Contains(c.Name, "#"):
		// '#' separates the name from the random part of the Raft server id.
		return nil, fmt.Errorf("name: %q contains '#'", c.Name)
	case c.DataDir == "":
		return nil, errors.New("data_dir: required")
	case !filepath.IsAbs(c.DataDir):
		return nil, fmt.Errorf("data_dir: %q is not an absolute path", c.DataDir)
	case c.ProbeInterval < 0:
		return nil, fmt.Errorf("probe_interval: %s is negative", c.ProbeInterval)
	case c.ProbeTimeout < 0:
		return nil, fmt.Errorf("probe_timeout: %s is negative", c.ProbeTimeout)
	case c.Lease < 0:
		return nil, fmt.Errorf("lease: %s is negative", c.Lease)
	case c.RemoveLeftAfter < 0:
		return nil, fmt.Errorf("remove_left_after: %s is negative", c.RemoveLeftAfter)
	case c.Lease < 2*c.ProbeInterval:
		return nil, fmt.Errorf("lease: %s is shorter than two probe_interval (%s): reports renew it", c.Lease, c.ProbeInterval)
	case c.ReplicationStallTimeout < 0:
		return nil, fmt.Errorf("replication_stall_timeout: %s is negative", c.ReplicationStallTimeout)
	case c.ProbeRetries < 0:
		return nil, fmt.Errorf("probe_retries: %d is negative", c.ProbeRetries)
	case (c.TLSCAFile == "") != (c.TLSCertFile == "") || (c.TLSCAFile == "") != (c.TLSKeyFile == ""):
		return nil, errors.New("tls: give ca_file, cert_file and key_file, or none")
	case c.Voters != 1 && c.Voters != 3 && c.Voters != 5:
		return nil, fmt.Errorf("voters: %d is not 1, 3 or 5", c.Voters)
	case c.BootstrapExpect < 0:
		return nil, fmt.Errorf("bootstrap_expect: %d is negative", c.BootstrapExpect)
	case c.Bootstrap && c.BootstrapExpect > 0:
		return nil, errors.New("bootstrap and bootstrap_expect: give one")
	case c.Client && (c.Bootstrap || c.BootstrapExpect > 0):
		return nil, errors.New("server: false: a client agent holds no Raft log, so it cannot bootstrap a cluster (drop bootstrap and bootstrap_expect, or make it a server)")
	case c.Client && len(c.Join) == 0 && len(c.Servers) == 0:
		return nil, errors.New("server: false: a client agent finds the servers by gossip (join) or by their API addresses (servers); give one")
	case !c.Client && len(c.Servers) > 0:
		return nil, errors.New("servers: only a client (server: false) finds the servers by their API addresses; a server joins them by gossip (join)")
	case c.SuperPassword == "":
		return nil, errors.New("postgres.superuser_password: required")
	case c.ReplPassword == "":
		return nil, errors.New("postgres.replication_password: required")
	}
	for i, j := range c.Join {
		if _, _, err := net.SplitHostPort(j); err != nil {
			return nil, fmt.Errorf("join[%d]: %q is not host:port", i, j)
		}
	}
	for i, addr := range c.Servers {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("servers[%d]: %q is not host:port", i, addr)
		}
	}
	for field, addr := range map[string]string{"api_addr": c.APIAddr, "raft_addr": c.RaftAddr, "gossip_addr": c.GossipAddr} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("%s: %q is not host:port", field, addr)
		}
	}
	c.RaftSnapshotThreshold = consensus.DefaultSnapshotThreshold
	c.RaftSnapshotInterval = consensus.DefaultSnapshotInterval
	if v := fc.RaftSnapshotThreshold; v != nil {
		if *v <= 0 {
			return nil, fmt.Errorf("raft_snapshot_threshold: %d is not a positive number of log entries", *v)
		}
		c.RaftSnapshotThreshold = uint64(*v)
	}
	if v := fc.RaftSnapshotInterval; v != nil {
		if *v <= 0 {
			return nil, fmt.Errorf("raft_snapshot_interval: %s is not a positive duration", *v)
		}
		c.RaftSnapshotInterval = *v
	}
	switch fc.AutoRecover {
	case "", "off":
	case "incremental":
		c.AutoRecover = true
	default:
		return nil, fmt.Errorf("auto_recover: %q is not off or incremental", fc.AutoRecover)
	}
	level, err := parseLevel(fc.LogLevel)
	if err != nil {
		return nil, err
	}
	c.LogLevel = level
	switch strings.ToLower(fc.LogFormat) {
	case "", LogFormatText:
		c.LogFormat = LogFormatText
	case LogFormatJSON:
		c.LogFormat = LogFormatJSON
	default:
		return nil, fmt.Errorf("log_format: %q is not text or json", fc.LogFormat)
	}
	return c, nil
}

func parseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "", "info":
		return slog.LevelInfo, nil
	case "debug":
		return slog.LevelDebug, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("log_level: %q is not debug, info, warn or error", s)
}

// checkSecure refuses a config that would let anyone who reaches the agent
// change the cluster: the API needs TLS or a token, gossip a key. With
// insecure: true the agent starts anyway, after one warning line.
func checkSecure(c *Config, log *slog.Logger) error {
	var missing []string
	if c.TLSCAFile == "" && c.Token == "" {
		missing = append(missing, "no credential guards the API (give tls: ca_file, cert_file, key_file, or token_file)")
	}
	if len(c.GossipKeys) == 0 {
		missing = append(missing, "gossip is not encrypted (give gossip_key_file)")
	}
	if len(missing) == 0 {
		if c.TLSCAFile == "" {
			// Token only: the explicit choice of plain HTTP (tls left
			// out), said once at start with what it leaves open.
			log.Warn("no tls: the API is plain HTTP, so the cluster token crosses the network in clear, and Raft (raft_addr " + c.RaftAddr + ") is not encrypted: its peers prove they hold the token, but whoever can read or rewrite the traffic between agents can read or forge Raft messages; give tls (README: Who may change the cluster)")
		}
		return nil
	}
	if !c.Insecure {
		return fmt.Errorf("%s; gpagent keygen and gpagent tls make them, or set insecure: true to run open to anyone who reaches this host", strings.Join(missing, "; "))
	}
	log.Warn("insecure: true: anyone who reaches this agent's API, Raft or gossip port can change the cluster: " + strings.Join(missing, "; "))
	return nil
}

// cleanYAMLError turns yaml.v3's multi-line type errors into one line.
func cleanYAMLError(err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	msg = strings.TrimPrefix(msg, "unmarshal errors:\n")
	msg = strings.Join(strings.Fields(strings.ReplaceAll(msg, "\n", "; ")), " ")
	return errors.New(msg)
}

func orDefault(v, d string) string {
	if v == "" {
		return d
	}
	return v
}
