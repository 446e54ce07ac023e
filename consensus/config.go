package consensus

import (
	"log/slog"
	"time"

	"github.com/hashicorp/raft"
)

// Defaults for Config's timing fields, tuned for a LAN: half of raft's
// own defaults (1s, 1s, 500ms), keeping its ratio of lease to heartbeat
// timeout, so a lost leader is replaced within a second or two while a
// short GC pause does not depose one. Followers learn the commit index
// at least every CommitTimeout, which bounds how far Changes lags.
const (
	DefaultHeartbeatTimeout   = 500 * time.Millisecond
	DefaultElectionTimeout    = 500 * time.Millisecond
	DefaultLeaderLeaseTimeout = 250 * time.Millisecond
	DefaultCommitTimeout      = 20 * time.Millisecond
)

const (
	snapshotsRetained = 2
	transportMaxPool  = 3
	transportTimeout  = 10 * time.Second
	// leaderChangesBuffer lets a few transitions wait for a slow reader;
	// more wait, in order, in the forwarder's queue.
	leaderChangesBuffer = 8
)

// Config configures a Node. Zero timing fields take the defaults above,
// or raft's own for the snapshot settings.
type Config struct {
	NodeID    string // agent name; the raft server id
	DataDir   string // agent data dir; raft state lives in DataDir/raft
	BindAddr  string // raft TCP bind address; "127.0.0.1:0" picks a port
	Advertise string // address peers dial; defaults to the bound address
	// Bootstrap makes this node a single-voter cluster when it has no
	// raft state yet. Only the first node of a new cluster may set it:
	// a member whose data dir was wiped must join (AddVoter from the
	// leader), or it would start a second cluster of its own.
	Bootstrap bool
	Logger    *slog.Logger

	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
	SnapshotInterval   time.Duration
	SnapshotThreshold  uint64
	TrailingLogs       uint64
}

func (c Config) raftConfig() *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(c.NodeID)
	rc.HeartbeatTimeout = orDefault(c.HeartbeatTimeout, DefaultHeartbeatTimeout)
	rc.ElectionTimeout = orDefault(c.ElectionTimeout, DefaultElectionTimeout)
	rc.LeaderLeaseTimeout = orDefault(c.LeaderLeaseTimeout, DefaultLeaderLeaseTimeout)
	rc.CommitTimeout = orDefault(c.CommitTimeout, DefaultCommitTimeout)
	rc.SnapshotInterval = orDefault(c.SnapshotInterval, rc.SnapshotInterval)
	rc.SnapshotThreshold = orDefault(c.SnapshotThreshold, rc.SnapshotThreshold)
	rc.TrailingLogs = orDefault(c.TrailingLogs, rc.TrailingLogs)
	return rc
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}
