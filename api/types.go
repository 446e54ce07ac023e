// Package api holds the agent's HTTP API: the wire types, the stable error
// codes and the typed client every gpagent subcommand goes through.
package api

import (
	"time"

	"github.com/gpagent/gpagent/topology"
)

// State is the answer of GET /v1/state. Its first two fields are the
// gpstate --json contract: config_version and segments with Greenplum's
// column names and letters.
type State struct {
	ConfigVersion uint64             `json:"config_version"`
	Segments      []topology.Segment `json:"segments"`

	ClusterID string `json:"cluster_id,omitempty"`
	Paused    bool   `json:"paused,omitempty"`
	Leader    string `json:"leader,omitempty"`
	// Stale is set when the answering agent could not confirm it is the
	// leader: the topology may lag behind the committed one.
	Stale bool `json:"stale,omitempty"`
	// Pending lists instances placed but not created yet.
	Pending []int `json:"pending,omitempty"`
	// Rejoin lists mirrors starting from their own data (switchover).
	Rejoin []int `json:"rejoin,omitempty"`
	// Switchovers in progress.
	Switchovers []topology.Switchover `json:"switchovers,omitempty"`
	// Recoveries in progress or queued.
	Recoveries []topology.Recovery `json:"recoveries,omitempty"`
	// Instances is the latest report of each instance's own agent.
	Instances []InstanceReport `json:"instances,omitempty"`
}

// InstanceReport is what an agent saw of one local instance.
type InstanceReport struct {
	DBID int    `json:"dbid"`
	Host string `json:"host"`
	// ConfigVersion of the topology the agent acted on.
	ConfigVersion uint64    `json:"config_version"`
	Seen          time.Time `json:"seen"`
	Phase         string    `json:"phase"` // topology.Phase.String(): creating, building, running, stopped, failed, ...
	PID           int       `json:"pid,omitempty"`
	Up            bool      `json:"up"`
	// Failed: this agent vouches the instance is down (exited, not
	// running, or probe_retries probes failed in a row).
	Failed   bool `json:"failed,omitempty"`
	Recovery bool `json:"in_recovery"`
	// Streaming: a mirror's WAL receiver is streaming.
	Streaming bool `json:"streaming,omitempty"`
	// LSN is pg_current_wal_lsn on a primary, the replay position on a
	// mirror; LSNValue the same as a number.
	LSN      string `json:"lsn,omitempty"`
	LSNValue uint64 `json:"lsn_value,omitempty"`
	// StoppedLSN: shut down cleanly for a switchover at this checkpoint.
	StoppedLSN uint64 `json:"stopped_lsn,omitempty"`
	// RecoveryError: the recovery (job RecoveryJob) of this instance failed.
	RecoveryError string `json:"recovery_error,omitempty"`
	RecoveryJob   int    `json:"recovery_job,omitempty"`
	// RecoveredJob: the recovery step of this job finished before the
	// probe this report carries.
	RecoveredJob int `json:"recovered_job,omitempty"`
	// SyncStandbyNames as the server reports it (primaries).
	SyncStandbyNames string `json:"sync_standby_names,omitempty"`
	// SyncedMirrors: mirrors this primary's agent vouches are in sync.
	SyncedMirrors  []int          `json:"synced_mirrors,omitempty"`
	StalledMirrors []int          `json:"stalled_mirrors,omitempty"`
	Replicas       []ReplicaState `json:"replicas,omitempty"`
	Progress       *Progress      `json:"progress,omitempty"`
	Error          string         `json:"error,omitempty"`
}

// ReplicaState is one row of a primary's pg_stat_replication.
type ReplicaState struct {
	ApplicationName string `json:"application_name"`
	State           string `json:"state"`
	SyncState       string `json:"sync_state"`
	FlushLagBytes   int64  `json:"flush_lag_bytes"`
	ReplayLagBytes  int64  `json:"replay_lag_bytes"`
}

// Progress of a long step (a base backup).
type Progress struct {
	Step    string    `json:"step"`
	Done    int64     `json:"done_bytes"`
	Total   int64     `json:"total_bytes"`
	Started time.Time `json:"started"`
}

// Observation turns a report into the input of topology.Decide.
func (r InstanceReport) Observation() topology.Observation {
	return topology.Observation{
		DBID:           r.DBID,
		Up:             r.Up,
		Failed:         r.Failed,
		InRecovery:     r.Recovery,
		Streaming:      r.Streaming,
		SyncedMirrors:  r.SyncedMirrors,
		StalledMirrors: r.StalledMirrors,
		LSN:            r.LSNValue,
		StoppedLSN:     r.StoppedLSN,
		RecoveryError:  r.RecoveryError,
		RecoveryJob:    r.RecoveryJob,
		RecoveredJob:   r.RecoveredJob,
		ConfigVersion:  r.ConfigVersion,
	}
}

// Report is the body of POST /v1/report: an agent's view of its instances.
type Report struct {
	Agent     string           `json:"agent"`
	Instances []InstanceReport `json:"instances"`
	// API: the reporting agent's API address. The leader reaches a
	// client that joined no gossip pool there (preflight, members).
	API string `json:"api,omitempty"`
	// Seq numbers a full report (Instances as probed) among those this
	// agent process sent; it increases, and starts from the process's
	// start time in nanoseconds, so a restarted agent never reuses one.
	Seq uint64 `json:"seq,omitempty"`
	// Same, non-zero, makes this a heartbeat (Instances empty): the
	// agent's instances this round are the same as in its full report
	// Seq=Same, but for what moves on its own (Seen, the LSNs and
	// replication lags), made now on ConfigVersion (every instance of a
	// round is made on one topology) and probed at Seen. A leader that
	// does not hold that full report answers CodeResend.
	Same          uint64    `json:"same,omitempty"`
	ConfigVersion uint64    `json:"config_version,omitempty"`
	Seen          time.Time `json:"seen,omitzero"`
}

// Heartbeat reports whether r is a heartbeat rather than a full report.
func (r Report) Heartbeat() bool { return r.Same != 0 }

// ReportAck is the leader's answer to a report: the config version it has
// committed. The reporting agent renews its lease only once it has
// applied that version itself, so it never lifts a fence while acting on
// a topology older than the leader's.
type ReportAck struct {
	ConfigVersion uint64 `json:"config_version"`
	// LeaseVersion is the version from which the agent's roles (its
	// instances and which are primaries) have been the ones the leader
	// holds: the report renews the lease once it is made on it. A leader
	// before this field gave ConfigVersion only, which then serves.
	LeaseVersion uint64 `json:"lease_version,omitempty"`
}

// InitRequest is the body of POST /v1/init.
type InitRequest struct {
	Spec      topology.Spec `json:"spec"`
	NoMirrors bool          `json:"no_mirrors"`
}

// MirrorPlanRequest is the body of POST /v1/addmirrors/plan.
type MirrorPlanRequest struct {
	Spread  bool                   `json:"spread"`
	Entries []topology.MirrorEntry `json:"entries,omitempty"`
}

// MirrorPlan is a set of mirrors to add, computed from BaseVersion.
type MirrorPlan struct {
	BaseVersion uint64             `json:"base_version"`
	Mirrors     []topology.Segment `json:"mirrors"`
}

// History is the answer of GET /v1/history, oldest first.
type History []topology.HistoryEntry

// ConnInfo lists where a content's instances listen, acting primary first.
type ConnInfo struct {
	Content int        `json:"content"`
	Hosts   []HostPort `json:"hosts"`
	User    string     `json:"user"`
	DBName  string     `json:"dbname"`
}

// HostPort is one instance's address.
type HostPort struct {
	Address string `json:"address"`
	Port    int    `json:"port"`
}

// Segment returns the instance with the given dbid.
func (s State) Segment(dbid int) (topology.Segment, bool) {
	for _, x := range s.Segments {
		if x.DBID == dbid {
			return x, true
		}
	}
	return topology.Segment{}, false
}

// SwitchoverRequest is the body of POST /v1/switchover.
type SwitchoverRequest struct {
	Content int `json:"content"`
}

// StandbyRequest is the body of POST /v1/initstandby; zero fields take
// defaults (the coordinator's host and port, a datadir beside its own).
type StandbyRequest struct {
	Host    string `json:"host,omitempty"`
	Port    int    `json:"port,omitempty"`
	DataDir string `json:"datadir,omitempty"`
}

// RecoverRequest is the body of POST /v1/recover/plan (gprecoverseg).
type RecoverRequest struct {
	Full     bool                    `json:"full,omitempty"`     // -F
	Entries  []topology.RecoverEntry `json:"entries,omitempty"`  // -i
	Host     string                  `json:"host,omitempty"`     // -p
	Parallel int                     `json:"parallel,omitempty"` // -B
}

// RecoverPlan is what recoverseg will do; Running names a recovery job in
// progress instead, to attach to.
type RecoverPlan struct {
	BaseVersion uint64        `json:"base_version"`
	Parallel    int           `json:"parallel,omitempty"`
	Steps       []RecoverStep `json:"steps"`
	Running     int           `json:"running_job,omitempty"`
}

// RecoverStep is one instance's recovery.
type RecoverStep struct {
	Request topology.RecoveryRequest `json:"request"`
	Content int                      `json:"content"`
	From    topology.Segment         `json:"from"`
	To      *topology.Segment        `json:"to,omitempty"`
	Source  topology.Segment         `json:"source"`
}

// DefaultRebalanceLagBytes is the replay lag above which rebalance leaves
// a pair alone, as Greenplum does above 10 GB.
const DefaultRebalanceLagBytes = 10 << 30

// RebalanceRequest is the body of POST /v1/rebalance (gprecoverseg -r).
type RebalanceRequest struct {
	MaxLagBytes int64 `json:"max_lag_bytes,omitempty"`
}

// RebalanceResult lists the contents whose switchover started (or runs)
// and those left alone, with why.
type RebalanceResult struct {
	Started []int  `json:"started"`
	Skipped []Skip `json:"skipped,omitempty"`
	// ConfigVersion: the topology's version once every switchover was
	// begun; a state at least this new shows each one in progress
	// until it ends (swapped or abandoned).
	ConfigVersion uint64 `json:"config_version,omitempty"`
}

// Skip is a content rebalance left alone.
type Skip struct {
	Content int    `json:"content"`
	Reason  string `json:"reason"`
}

// PreflightRequest is the body of POST /v1/local/preflight: the leader
// asks an agent whether these instances can be created on its host.
type PreflightRequest struct {
	ClusterID string             `json:"cluster_id"`
	Segments  []topology.Segment `json:"segments"`
}

// Member is one agent as GET /v1/members shows it.
type Member struct {
	Name      string `json:"name"`
	Gossip    string `json:"gossip_addr"`
	Status    string `json:"status"` // alive, suspect, dead, left
	APIAddr   string `json:"api_addr,omitempty"`
	RaftAddr  string `json:"raft_addr,omitempty"`
	RaftRole  string `json:"raft_role"` // leader, voter, nonvoter, none
	Version   string `json:"version,omitempty"`
	Instances []int  `json:"instances"`
}

// Members is the answer of GET /v1/members.
type Members struct {
	Leader  string   `json:"leader"`
	Members []Member `json:"members"`
}

// DataFile is one entry of GET /v1/local/files/{dbid}: a directory, or a
// file and its size when listed, by its slash-separated path inside the
// data directory.
type DataFile struct {
	Path string `json:"path"`
	Size int64  `json:"size,omitempty"`
	Dir  bool   `json:"dir,omitempty"`
}

// FileRange is one part of the body of POST /v1/local/files/{dbid}/read:
// N bytes of a data file from offset Off.
type FileRange struct {
	Path string `json:"path"`
	Off  int64  `json:"off"`
	N    int64  `json:"n"`
}

// Table is a distributed table (gpagent table create / list).
type Table struct {
	Name          string `json:"name"`
	DistributedBy string `json:"distributed_by"`
	DDL           string `json:"ddl"`
}

// TableCreated answers POST /v1/tables: Existed says the table was there
// already and nothing changed.
type TableCreated struct {
	Table    Table `json:"table"`
	Existed  bool  `json:"existed"`
	Contents int   `json:"contents"`
}

// TopologyView is the answer of GET /v1/topology, the blocking query by
// which a client agent (one that holds no Raft log) learns the committed
// topology: a server answers once its topology is newer than the version
// the client named, or at the wait.
type TopologyView struct {
	// Topology is the server's committed topology (as applied there).
	Topology *topology.Topology `json:"topology"`
	// Leader is the agent the answering server knows as the Raft leader
	// ("" if none): the client sends its reports there.
	Leader string `json:"leader"`
	// Servers are the members of the Raft configuration, by agent name.
	Servers []TopologyServer `json:"servers,omitempty"`
}

// TopologyServer is one member of the Raft configuration.
type TopologyServer struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Address string `json:"address"`
	// API: the server's API address, where a client without gossip
	// (servers in its config) sends its queries and reports.
	API    string `json:"api,omitempty"`
	Voter  bool   `json:"voter"`
	Leader bool   `json:"leader,omitempty"`
}
