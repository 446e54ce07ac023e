package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gpagent/gpagent/supervisor"
	"github.com/gpagent/gpagent/topology"
)

const fencedStandby = supervisor.FencedStandby

// lease is this agent's right to keep primaries writable (safety rule 5).
// It is renewed by every report the leader acknowledges (or by leading:
// a Raft leader has heard from a quorum within its leader lease), and
// runs on the local monotonic clock only. The leader promotes nothing on
// a host before lease plus a margin has passed since it last heard from
// it, so by then this agent has fenced its primaries.
type lease struct {
	mu      sync.Mutex
	renewed time.Time
	fenced  bool
	// pending: acknowledged reports not yet applied to the lease, each
	// waiting for the local topology to reach the leader's version.
	pending topology.PendingRenewals
	// path records each renewal on the boot clock, so that a restarted
	// agent resumes the lease its previous run held rather than granting
	// itself a fresh one ("" in tests: nothing recorded).
	path   string
	bootID string
	log    *slog.Logger
}

// leaseFile, in the agent's data dir, holds the boot id and the last
// renewal on CLOCK_BOOTTIME, which runs on across agent restarts (not
// across reboots, which the boot id tells apart).
const leaseFile = "lease"

// newLease resumes the lease recorded in dataDir by an earlier run of the
// agent on this boot. A record from an earlier boot, or one that cannot be
// read, counts as expired: the primaries are fenced until the leader is
// heard from. With no record at all (a first start) the lease starts now
// (the agent's clock).
func newLease(dataDir string, now time.Time, log *slog.Logger) *lease {
	l := &lease{renewed: now, path: filepath.Join(dataDir, leaseFile), bootID: bootID(), log: log}
	b, err := os.ReadFile(l.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return l
	case err != nil:
		l.renewed = time.Time{}
		return l
	}
	id, at, ok := strings.Cut(strings.TrimSpace(string(b)), " ")
	ns, perr := strconv.ParseInt(at, 10, 64)
	boot, berr := bootNanos()
	if !ok || perr != nil || berr != nil || id != l.bootID || l.bootID == "" || ns > boot {
		l.renewed = time.Time{}
		return l
	}
	l.renewed = now.Add(-time.Duration(boot - ns))
	return l
}

// renew extends the lease from the moment the renewing request was sent;
// now is the agent's clock, to place sent on the boot clock.
func (l *lease) renew(sent, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !sent.After(l.renewed) {
		return
	}
	l.renewed = sent
	if l.path == "" {
		return
	}
	boot, err := bootNanos()
	if err != nil {
		return
	}
	// No fsync: the record only has to outlive the agent process; a
	// crash of the host ends the boot, and with it the postmasters.
	rec := fmt.Sprintf("%s %d\n", l.bootID, boot-int64(now.Sub(sent)))
	if err := os.WriteFile(l.path, []byte(rec), 0o600); err != nil && l.log != nil {
		l.log.Warn("cannot record the lease renewal; a restart of this agent will fence its primaries until the leader is heard from", "path", l.path, "err", err)
	}
}

// acked records the leader's acknowledgement, at config version
// version, of a report sent at sent; applyAcked renews the lease with it
// once the local topology has reached that version.
func (l *lease) acked(sent time.Time, version uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pending.Acked(sent, version)
}

// applyAcked renews the lease with the acknowledgements whose version is
// at most applied, the config version of the topology the agent acts on.
func (l *lease) applyAcked(applied uint64, now time.Time) {
	l.mu.Lock()
	sent, ok := l.pending.Applied(applied)
	l.mu.Unlock()
	if ok {
		l.renew(sent, now)
	}
}

// bootNanos reads CLOCK_BOOTTIME.
func bootNanos() (int64, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0, err
	}
	return ts.Nano(), nil
}

// bootID names this boot of the host ("" if unknown).
func bootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// expired reports whether more than d has passed since the last renewal,
// at now on the agent's clock.
func (l *lease) expired(now time.Time, d time.Duration) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return topology.LeaseExpired(l.renewed, now, d)
}

func (l *lease) setFenced(f bool) (changed bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	changed = l.fenced != f
	l.fenced = f
	return changed
}

func (l *lease) isFenced() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fenced
}

// checkLease fences this host's primaries once the lease has run out,
// and lifts the fence once it is renewed: then the topology decides
// again, and manageSync restores synchronous_standby_names for a primary
// that is still one (one demoted meanwhile is stopped instead).
func (e *executor) checkLease(ctx context.Context, t *topology.Topology) {
	e.a.lease.applyAcked(t.ConfigVersion, e.a.clock.Now())
	if !e.a.lease.expired(e.a.clock.Now(), e.a.cfg.Lease) {
		if e.a.lease.setFenced(false) {
			// manageSync lifts the fence from each primary the topology
			// still names; a demoted one is stopped instead.
			e.log.Warn("lease renewed: fence lifted")
		}
		return
	}
	if e.a.lease.setFenced(true) {
		e.a.counts.fences.Add(1)
		e.log.Error("no quorum for longer than the lease: fencing local primaries", "lease", e.a.cfg.Lease)
	}
	for _, s := range t.OnHost(e.a.cfg.Name) {
		st := e.state(s.DBID)
		e.mu.Lock()
		h := st.health
		e.mu.Unlock()
		if h == nil || h.InRecovery || topology.SyncNamesInclude(h.SyncStandbyNames, fencedStandby) {
			continue
		}
		inst := localInstance(s)
		if err := e.a.drv.Fence(ctx, inst); err != nil {
			e.log.Error("fence failed; stopping the instance instead", "dbid", s.DBID, "err", err)
			sctx, cancel := context.WithTimeout(ctx, time.Second)
			_ = e.a.drv.Stop(sctx, inst)
			cancel()
			continue
		}
		e.log.Warn("primary fenced: commits wait for a standby that does not exist, new transactions are read-only", "dbid", s.DBID, "content", s.Content)
	}
}

// lostHosts returns the hosts the leader has not heard from for longer
// than lease plus margin at now (topology.LastHeard.Lost): their agents
// have fenced their primaries by then, so their instances count as
// failed. A host this leader never heard from gets a full wait from the
// start of its term (or from now, for a new host).
func (l *leader) lostHosts(t *topology.Topology, now time.Time) map[string]bool {
	wait := l.a.cfg.Lease + l.a.cfg.LeaseMargin
	l.mu.Lock()
	defer l.mu.Unlock()
	var lost map[string]bool
	l.heard, lost = l.heard.Lost(t.Hosts(), now, wait)
	return lost
}
