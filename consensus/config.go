package consensus

import (
	"crypto/tls"
	"log/slog"
	"net"
	"time"

	"github.com/hashicorp/raft"
)

// Defaults for Config's timing fields. The agents share their hosts with
// busy segments, so the timeouts are at the top of the LAN range: a leader
// steps down only after 750ms without a quorum, and followers start an
// election after 1-2s of silence (a CPU-starved agent should not depose a
// healthy leader). Losing the raft leader delays decisions
// by that much. It does not delay a segment failover the leader is alive
// to decide.
//
// The leader heartbeats each follower every tenth to fifth of its own
// HeartbeatTimeout, and a follower starts an election after its own
// HeartbeatTimeout of silence. While it leads, a node therefore runs with
// twice its HeartbeatTimeout (heartbeats every 200-400ms rather than
// 100-200ms, half the wakeups of an idle leader, its largest idle cost),
// and goes back to HeartbeatTimeout when it steps down: how soon followers
// notice a dead leader is unchanged (1-2s), and a follower still needs two
// heartbeats in a row lost or late before it would call an election. The
// leader lease is raised to match (750ms, was 500ms), so that a heartbeat
// late by up to 350ms (300ms before) does not make a healthy leader step
// down. A leader cut off from its quorum thus acknowledges reports up to
// 250ms longer; it still stops before a follower can start an election
// (after 1s of silence), so the agents' lease rule is unaffected.
//
// Followers learn of a commit at the next AppendEntries, and a mirror's
// agent acts on the commit that promotes it (DESIGN.md, failover step 4).
// Rather than a short CommitTimeout, which makes an idle leader send
// AppendEntries to every follower 5-10 times a second, Node.Apply follows
// each command with a barrier entry: its AppendEntries carries the
// command's commit at once. CommitTimeout then only bounds how late a
// follower hears of a commit when that barrier is lost.
const (
	DefaultHeartbeatTimeout   = 1000 * time.Millisecond
	DefaultElectionTimeout    = 1000 * time.Millisecond
	DefaultLeaderLeaseTimeout = 750 * time.Millisecond
	DefaultCommitTimeout      = 1000 * time.Millisecond
)

// DefaultSnapshotThreshold and DefaultSnapshotInterval are
// hashicorp/raft's own defaults (TestSnapshotDefaults_AreRafts), named
// here so that the agent's config can show and state them: Raft snapshots
// its log once this many entries were appended since the last snapshot,
// checked every interval plus up to one interval of jitter.
const (
	DefaultSnapshotThreshold = 8192
	DefaultSnapshotInterval  = 120 * time.Second
)

const (
	snapshotsRetained = 2
	transportMaxPool  = 3
	transportTimeout  = 10 * time.Second
	// leaderChangesBuffer lets a few transitions wait for a slow reader;
	// more wait, in order, in the forwarder's queue.
	leaderChangesBuffer = 8
)

// Config configures a Node. Zero timing fields take the defaults above.
type Config struct {
	NodeID   string // agent name; the raft server id
	DataDir  string // agent data dir; raft state lives in DataDir/raft
	BindAddr string // raft TCP bind address; "127.0.0.1:0" picks a port
	// Listener, when set, is what raft accepts peers on instead of a
	// listener on BindAddr (then optional), so a test can hand in one it
	// can cut. Open owns it: it is closed by Close, or by Open if it
	// fails. Under TLS it is wrapped with tls.NewListener.
	Listener net.Listener
	// Dial, when set, opens raft's outgoing connections instead of a plain
	// TCP dial (under TLS, the handshake runs over what it returns).
	Dial      func(address string, timeout time.Duration) (net.Conn, error)
	Advertise string // address peers dial; defaults to the bound address
	// Bootstrap makes this node a single-voter cluster when it has no
	// raft state yet. Only the first node of a new cluster may set it:
	// a member whose data dir was wiped must join (AddVoter from the
	// leader), or it would start a second cluster of its own.
	// TLS, when set, carries Raft over mutual TLS (it must require and
	// verify client certificates); nil means plain TCP.
	TLS *tls.Config
	// Secret, when set (and TLS not), is the cluster token: every Raft
	// connection then starts with a challenge-response keyed by it
	// (secret.go), so only its holders take part in Raft.
	Secret    []byte
	Bootstrap bool
	Logger    *slog.Logger

	HeartbeatTimeout time.Duration
	// LeaderHeartbeatTimeout is the HeartbeatTimeout while this node
	// leads (it only paces the leader's heartbeats then): zero is twice
	// HeartbeatTimeout, and it is never below HeartbeatTimeout.
	LeaderHeartbeatTimeout time.Duration
	ElectionTimeout        time.Duration
	LeaderLeaseTimeout     time.Duration
	CommitTimeout          time.Duration
	SnapshotInterval       time.Duration
	SnapshotThreshold      uint64
	TrailingLogs           uint64
}

func (c Config) raftConfig() *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(c.NodeID)
	rc.HeartbeatTimeout = orDefault(c.HeartbeatTimeout, DefaultHeartbeatTimeout)
	rc.ElectionTimeout = orDefault(c.ElectionTimeout, DefaultElectionTimeout)
	rc.LeaderLeaseTimeout = orDefault(c.LeaderLeaseTimeout, DefaultLeaderLeaseTimeout)
	rc.CommitTimeout = orDefault(c.CommitTimeout, DefaultCommitTimeout)
	rc.SnapshotInterval = orDefault(c.SnapshotInterval, DefaultSnapshotInterval)
	rc.SnapshotThreshold = orDefault(c.SnapshotThreshold, DefaultSnapshotThreshold)
	rc.TrailingLogs = orDefault(c.TrailingLogs, rc.TrailingLogs)
	return rc
}

// reloadable is raft's runtime-changeable config for the node's role:
// the leader heartbeats at its LeaderHeartbeatTimeout, a follower or
// candidate times out after HeartbeatTimeout. ElectionTimeout may not be
// below HeartbeatTimeout (raft checks); only candidates use it.
func (c Config) reloadable(base raft.ReloadableConfig, leader bool) raft.ReloadableConfig {
	hb := orDefault(c.HeartbeatTimeout, DefaultHeartbeatTimeout)
	et := orDefault(c.ElectionTimeout, DefaultElectionTimeout)
	if leader {
		hb = max(hb, orDefault(c.LeaderHeartbeatTimeout, 2*hb))
		et = max(et, hb)
	}
	base.HeartbeatTimeout, base.ElectionTimeout = hb, et
	return base
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}
