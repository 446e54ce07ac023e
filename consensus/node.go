// Package consensus keeps the cluster topology in a Raft log
// (hashicorp/raft over raft-boltdb). Every topology change is one Raft
// entry: totally ordered, durable on a quorum before anyone acts on it,
// applied by the same pure topology.Apply on every replica (safety rule 6).
// See DESIGN.md in this directory.
package consensus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/gpagent/gpagent/topology"
)

// ErrNotLeader is returned by the calls only the leader may make when this
// node is not the leader, or lost leadership while the call was in flight.
// In the second case the entry may still commit: a retry computed from the
// same config version is then rejected as topology.ErrStale, never applied
// twice.
var ErrNotLeader = errors.New("not the raft leader")

// ErrStateUnreadable: the Raft state in the data dir cannot be read (a
// corrupt log store or snapshot, an unreadable server id). The node
// cannot start; its agent must not leave primaries writable meanwhile.
var ErrStateUnreadable = errors.New("raft state unreadable")

// Node is this agent's raft member and the committed topology it applies.
type Node struct {
	// existing: the node had raft state at open, or bootstrapped since.
	existing bool
	// id is the Raft server id (name#random, see identity.go); name the
	// agent's name, which is what users see.
	id, name  string
	stopGuard chan struct{}
	log       *slog.Logger
	raft      *raft.Raft
	fsm       *fsm
	trans     *raft.NetworkTransport
	store     *raftboltdb.BoltStore

	// cfg: the timing settings, for the role-dependent reloads.
	cfg           Config
	leaderChanges chan bool
	stopForward   chan struct{}
	forwardDone   chan struct{}

	// minVersion, once set, returns the lowest version among the
	// cluster's members, for the upgrade gate (versions.go).
	minVersion atomic.Pointer[func() string]

	unlock    func() error // releases the data dir lock
	closeOnce sync.Once
	closeErr  error
}

// Open starts the raft member kept in cfg.DataDir/raft, bootstrapping a
// single-voter cluster if cfg.Bootstrap is set and there is no state yet.
func Open(cfg Config) (_ *Node, err error) {
	defer func() {
		if err != nil {
			closeListener(cfg.Listener) // startRaft may have closed it already; a second Close is harmless
		}
	}()
	if cfg.NodeID == "" || cfg.DataDir == "" || (cfg.BindAddr == "" && cfg.Listener == nil) {
		return nil, errors.New("open consensus: NodeID, DataDir and BindAddr (or Listener) are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	hlog := newHclogAdapter(cfg.Logger)
	rc := cfg.raftConfig()
	rc.Logger = hlog
	if err := raft.ValidateConfig(rc); err != nil {
		return nil, fmt.Errorf("open consensus: %w", err)
	}

	dir := filepath.Join(cfg.DataDir, "raft")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open consensus: %w", err)
	}
	unlock, err := lockDataDir(dir)
	if err != nil {
		return nil, fmt.Errorf("open consensus: %w", err)
	}
	store, err := raftboltdb.NewBoltStore(filepath.Join(dir, "raft.db"))
	if err != nil {
		_ = unlock()
		return nil, fmt.Errorf("open consensus: log store %s: %w: %w", filepath.Join(dir, "raft.db"), ErrStateUnreadable, err)
	}
	n, err := startRaft(cfg, rc, hlog, store, dir)
	if err != nil {
		_ = store.Close()
		_ = unlock()
		return nil, err
	}
	n.unlock = unlock
	return n, nil
}

// startRaft builds the rest of the node once the store is open; the
// caller closes the store if it fails.
func startRaft(cfg Config, rc *raft.Config, hlog hclog.Logger, store *raftboltdb.BoltStore, dir string) (*Node, error) {
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, snapshotsRetained, hlog)
	if err != nil {
		return nil, fmt.Errorf("open consensus: snapshot store: %w", err)
	}
	var advertise net.Addr
	if cfg.Advertise != "" {
		if advertise, err = net.ResolveTCPAddr("tcp", cfg.Advertise); err != nil {
			return nil, fmt.Errorf("open consensus: advertise address: %w", err)
		}
	}
	trans, err := newTransport(cfg, advertise, hlog)
	if err != nil {
		return nil, fmt.Errorf("open consensus: raft transport on %s: %w", transportAddr(cfg), err)
	}
	existing, err := raft.HasExistingState(store, store, snaps)
	if err != nil {
		_ = trans.Close()
		return nil, fmt.Errorf("open consensus: %w: %w", ErrStateUnreadable, err)
	}
	id, err := loadServerID(dir, cfg.NodeID, existing)
	if err != nil {
		_ = trans.Close()
		return nil, fmt.Errorf("open consensus: %w: %w", ErrStateUnreadable, err)
	}
	rc.LocalID = raft.ServerID(id)
	if cfg.Bootstrap && !existing {
		boot := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: rc.LocalID, Address: trans.LocalAddr()}}}
		if err := raft.BootstrapCluster(rc, store, store, snaps, trans, boot); err != nil {
			_ = trans.Close()
			return nil, fmt.Errorf("open consensus: bootstrap: %w", err)
		}
	}
	// Buffered: raft sends its last "false" at shutdown without blocking.
	notify := make(chan bool, 1)
	rc.NotifyCh = notify
	n := &Node{
		id:            id,
		name:          cfg.NodeID,
		stopGuard:     make(chan struct{}),
		existing:      existing || (cfg.Bootstrap && !existing),
		log:           cfg.Logger.With("component", "consensus"),
		fsm:           newFSM(),
		trans:         trans,
		store:         store,
		cfg:           cfg,
		leaderChanges: make(chan bool, leaderChangesBuffer),
		stopForward:   make(chan struct{}),
		forwardDone:   make(chan struct{}),
	}
	n.fsm.log = n.log
	guard := guardVotes(trans, rc.LocalID, n.stopGuard)
	if n.raft, err = raft.NewRaft(rc, n.fsm, store, store, snaps, guard); err != nil {
		close(n.stopGuard)
		_ = trans.Close()
		// NewRaft fails on state it cannot restore (snapshots, log).
		return nil, fmt.Errorf("open consensus: start raft: %w: %w", ErrStateUnreadable, err)
	}
	guard.setConfig(func() raft.Configuration { return n.raft.GetConfiguration().Configuration() })
	go n.forwardLeadership(notify)
	n.log.Info("raft started", "node_id", cfg.NodeID, "server_id", id, "addr", trans.LocalAddr(),
		"existing_state", existing, "bootstrapped", cfg.Bootstrap && !existing)
	return n, nil
}

// Close stops raft (not gracefully: a leader does not hand over first),
// closes the transport and the stores. Calling it again returns the first
// result.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		var errs []error
		// The shutdown future also closes the transport.
		if err := n.raft.Shutdown().Error(); err != nil {
			errs = append(errs, fmt.Errorf("shutdown raft: %w", err))
		}
		close(n.stopForward)
		<-n.forwardDone
		close(n.stopGuard)
		if err := n.store.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close raft log store: %w", err))
		}
		if err := n.unlock(); err != nil {
			errs = append(errs, fmt.Errorf("unlock data dir: %w", err))
		}
		n.closeErr = errors.Join(errs...)
		n.log.Info("raft stopped")
	})
	return n.closeErr
}

// Topology returns the committed topology this node has applied: never
// nil, empty before init, and never modified (callers may keep it). A
// follower, or a restarted node that has not caught up yet, may lag the
// leader; a caller that needs the latest value asks the leader after
// Barrier or VerifyLeader.
func (n *Node) Topology() *topology.Topology { return n.fsm.current() }

// Apply commits cmd through raft and returns the topology it produced.
// Only the leader may apply (ErrNotLeader otherwise). cmd.Time is stamped
// here when zero, so that every replica applies the same instant;
// cmd.BaseVersion is the caller's: it names the view the decision was
// computed from, and topology.Apply rejects it (topology.ErrStale) if the
// topology moved on. A command topology.Apply rejects is returned as its
// error and changes nothing. If ctx ends first the entry may still commit.
func (n *Node) Apply(ctx context.Context, cmd topology.Command) (*topology.Topology, error) {
	if cmd.Time.IsZero() {
		cmd.Time = time.Now().UTC()
	}
	op := "apply " + cmd.Type.String()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err) // not sent, so certainly not applied
	}
	if minVersion := n.minVersion.Load(); minVersion != nil {
		if err := checkVersionGate(cmd, (*minVersion)()); err != nil {
			return nil, fmt.Errorf("%s: %w", op, err) // not sent
		}
	}
	b, err := encodeCommand(cmd)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	f := n.raft.Apply(b, enqueueTimeout(ctx))
	if err := waitFuture(ctx, f); err != nil {
		return nil, raftError(op, err)
	}
	// The entry is committed; the followers hear so with the next
	// AppendEntries, which this barrier sends now rather than after
	// CommitTimeout. Not waited for: it only carries the news.
	n.raft.Barrier(enqueueTimeout(ctx))
	switch resp := f.Response().(type) {
	case *topology.Topology:
		n.log.Debug("applied", "command", cmd.Type.String(), "config_version", resp.ConfigVersion, "index", f.Index())
		return resp, nil
	case error:
		n.log.Debug("command rejected", "command", cmd.Type.String(), "base_version", cmd.BaseVersion, "err", resp)
		return nil, fmt.Errorf("%s: %w", op, resp)
	default:
		return nil, fmt.Errorf("%s: unexpected FSM response %T", op, resp)
	}
}

// SetMinVersion gives Apply the lowest version among the cluster's
// members (from their gossip metadata): a command that needs a newer one
// is refused before it reaches the log, so no member meets an entry it
// cannot apply. Until it is set, Apply writes every command.
func (n *Node) SetMinVersion(fn func() string) { n.minVersion.Store(&fn) }

// IsLeader reports whether this node believes it is the leader. Answers
// that must not be stale go through VerifyLeader.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Leader returns the agent name and raft address of the leader this node
// knows of, or empty strings.
func (n *Node) Leader() (name string, addr string) {
	a, i := n.raft.LeaderWithID()
	return AgentName(string(i)), string(a)
}

// ID is this member's Raft server id (name#random): gossip carries it,
// so the leader adds this member under it and sees when it changed.
func (n *Node) ID() string { return n.id }

// VerifyLeader confirms with a quorum that this node is still the leader,
// so that an answer it gives is not from a deposed leader.
func (n *Node) VerifyLeader() error {
	if err := n.raft.VerifyLeader().Error(); err != nil {
		return raftError("verify leader", err)
	}
	return nil
}

// Barrier waits until every entry committed before it has been applied
// to this node's topology. A new leader calls it before it trusts
// Topology().
func (n *Node) Barrier(ctx context.Context) error {
	f := n.raft.Barrier(enqueueTimeout(ctx))
	if err := waitFuture(ctx, f); err != nil {
		return raftError("barrier", err)
	}
	return nil
}

// Changes is signalled after every applied change and restore. Signals
// coalesce (capacity 1, never blocking the FSM): a reader loads
// Topology() after each one and sees the latest value.
func (n *Node) Changes() <-chan struct{} { return n.fsm.changes }

// Watch returns a channel closed at the next applied change or restore
// after the call: unlike Changes, any number of readers may wait on it.
// A reader calls Watch, then loads Topology(), and waits on the channel
// only if that is not yet the version it wants: a change between the two
// closes the channel it holds, so none is missed.
func (n *Node) Watch() <-chan struct{} { return n.fsm.watchNext() }

// ViewSince is the config version from which host's view of the committed
// topology (topology.HostViews) has been what it is now: the last applied
// entry that changed it, every entry seen.
func (n *Node) ViewSince(host string) uint64 { return n.fsm.viewSince(host) }

// RolesSince is the config version from which host's roles in the
// committed topology (its instances and which are primaries) have been
// what they are now (topology.ViewChanges.RolesSince).
func (n *Node) RolesSince(host string) uint64 { return n.fsm.rolesSince(host) }

// Addr returns the raft address peers reach this node at.
func (n *Node) Addr() string { return string(n.trans.LocalAddr()) }

// Stats returns raft's statistics plus the applied config version.
func (n *Node) Stats() map[string]string {
	s := n.raft.Stats()
	s["config_version"] = strconv.FormatUint(n.Topology().ConfigVersion, 10)
	return s
}

// Snapshot makes raft take a snapshot now and compact its log.
func (n *Node) Snapshot() error {
	if err := n.raft.Snapshot().Error(); err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	return nil
}

// enqueueTimeout is how long raft may wait to accept a request: until
// ctx's deadline, or for ever (0) without one.
func enqueueTimeout(ctx context.Context) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		return max(time.Until(d), time.Millisecond)
	}
	return 0
}

// waitFuture waits for f or for ctx, whichever ends first. Raft resolves
// every future (at the latest with ErrRaftShutdown), so the helper
// goroutine always ends.
func waitFuture(ctx context.Context, f raft.Future) error {
	if ctx.Done() == nil {
		return f.Error()
	}
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("%w (the request may still complete)", ctx.Err())
	}
}

// raftError wraps a raft error, marking with ErrNotLeader the ones that
// mean "ask the leader".
func raftError(op string, err error) error {
	if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) ||
		errors.Is(err, raft.ErrLeadershipTransferInProgress) {
		return fmt.Errorf("%s: %w: %w", op, ErrNotLeader, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}
