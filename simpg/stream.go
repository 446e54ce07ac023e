package simpg

import (
	"slices"
	"time"

	"github.com/gpagent/gpagent/supervisor"
)

// receive is a running standby's walreceiver: it connects to the
// configured upstream when its WAL is a prefix of the upstream's flushed
// WAL (same history), copies the records the upstream has flushed, and
// otherwise waits for a change of either. It ends with the run gen.
func (w *World) receive(s *instance, gen uint64) {
	for {
		w.wakeups.Add(1)
		ls := w.lock(s)
		if s.runGen != gen || !s.inRecovery {
			if s.runGen == gen {
				w.disconnect(s)
			}
			ls.unlock()
			return
		}
		var up *instance
		var batch []Record
		if !s.hung {
			up = w.lookup(s.upKey)
			if s.connected != "" && (up == nil || s.connected != up.key) {
				w.disconnect(s) // primary_conninfo changed
			}
			if up != nil && s.connected == "" && up.running && !up.hung && canStream(s, up) {
				w.connect(s, up)
			}
			if up != nil && s.connected == up.key && !up.hung && !s.stalled {
				batch = slices.Clone(up.wal[len(s.wal):up.flushN])
			}
		}
		sch := s.changed
		var uch chan struct{}
		if up != nil {
			uch = up.changed
		}
		start, delay := len(s.wal), w.opts.BatchDelay+s.slowDisk
		ls.unlock()

		if len(batch) > 0 {
			if delay > 0 {
				select {
				case <-time.After(delay):
				case <-w.closed:
					return
				}
			}
			ls.relock()
			// Not once the link stalled meanwhile: a batch read before the
			// stall is dropped, so the flush stops moving when StallLink
			// returns (TestSimHangAndStall failed 1 in 40). s.connected
			// names up, so up is in the locked neighbourhood.
			if s.runGen == gen && s.connected == up.key && len(s.wal) == start && !s.hung && !s.stalled {
				s.wal = append(s.wal, batch...)
				s.flushN = len(s.wal)
				s.tli = up.tli
				s.replyTime = time.Now()
				if s.flushN >= up.flushN {
					s.caughtUp = true
				}
				s.bump()
				w.recomputeSync(up)
				up.bump()
			}
			ls.unlock()
			continue
		}
		select {
		case <-sch:
		case <-uch:
		case <-w.closed:
			return
		}
	}
}

// canStream: the upstream accepts s only while s's WAL is a prefix of what
// the upstream has flushed. A standby ahead of it, or one that diverged
// (an old primary with records its promoted mirror lacks), is refused, as
// PostgreSQL refuses a start point that is not on its timeline history.
func canStream(s, up *instance) bool {
	if up.dir != dirOurs || up == s {
		return false
	}
	return commonPrefix(s.wal, up.wal[:up.flushN]) == len(s.wal)
}

func (w *World) connect(s, up *instance) {
	s.connected = up.key
	s.caughtUp = len(s.wal) >= up.flushN
	s.replyTime = time.Now()
	up.downstream[s.key] = s
	w.recomputeSync(up)
	up.bump()
	s.bump()
}

func (w *World) disconnect(s *instance) {
	if s.connected == "" {
		return
	}
	if up := w.lookup(s.connected); up != nil {
		delete(up.downstream, s.key)
		up.bump()
	}
	s.connected = ""
	s.bump()
}

// syncStandby is the synchronous standby of p: the first name of its
// synchronous_standby_names (FIRST 1) whose standby streams from it, as
// PostgreSQL picks it among the walsenders in state streaming.
func (w *World) syncStandby(p *instance) *instance {
	for _, name := range p.syncNames {
		for _, d := range p.downstream {
			if d.caughtUp && supervisor.AppName(d.dbid) == name {
				return d
			}
		}
	}
	return nil
}

// recomputeSync releases the commits of p that need no more waiting: all
// of them when synchronous_standby_names is empty, else those its
// synchronous standby has flushed. The position only moves forward, as
// PostgreSQL's walsender releases waiters as replies come in.
func (w *World) recomputeSync(p *instance) {
	if !p.running || p.inRecovery {
		return
	}
	if len(p.syncNames) == 0 {
		p.released = max(p.released, p.insertLSN())
		return
	}
	if s := w.syncStandby(p); s != nil {
		p.released = max(p.released, s.flushLSN())
	}
}

// replication is p's pg_stat_replication, by application name.
func (w *World) replication(p *instance) []supervisor.Replica {
	sync := w.syncStandby(p)
	var rows []supervisor.Replica
	for _, d := range p.downstream {
		app := supervisor.AppName(d.dbid)
		r := supervisor.Replica{
			ApplicationName: app, State: "catchup", SyncState: "async",
			SentLSN: d.flushLSN(), FlushLSN: d.flushLSN(), ReplayLSN: d.flushLSN(),
			ReplyTime: d.replyTime,
		}
		if d.caughtUp {
			r.State = "streaming"
		}
		switch {
		case d == sync:
			r.SyncState = "sync"
		case slices.Contains(p.syncNames, app):
			r.SyncState = "potential"
		}
		rows = append(rows, r)
	}
	slices.SortFunc(rows, func(a, b supervisor.Replica) int {
		if a.ApplicationName < b.ApplicationName {
			return -1
		}
		if a.ApplicationName > b.ApplicationName {
			return 1
		}
		return 0
	})
	return rows
}
