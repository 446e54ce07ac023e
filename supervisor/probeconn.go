package supervisor

import (
	"context"
	"sync"

	"github.com/jackc/pgx/v5"
)

// freshEvery: one probe in this many opens a new connection, so a
// postmaster that no longer accepts connections (hung while its old
// backends still answer) is noticed within a few intervals; the others
// reuse a kept connection, sparing a TCP and SCRAM handshake every second
// per instance (the bulk of an idle agent's CPU).
const freshEvery = 5

// probeConns keeps one connection per instance for probes.
type probeConns struct {
	mu    sync.Mutex
	conns map[int]*pgx.Conn
	count map[int]int
}

// take returns the kept connection for dbid (removing it, so no other
// probe uses it meanwhile), or nil when a fresh one is due or none is kept.
func (p *probeConns) take(dbid int) *pgx.Conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns == nil {
		p.conns, p.count = map[int]*pgx.Conn{}, map[int]int{}
	}
	p.count[dbid]++
	c := p.conns[dbid]
	delete(p.conns, dbid)
	if c != nil && p.count[dbid]%freshEvery == 0 {
		closeConn(c)
		return nil
	}
	return c
}

// put keeps c for the next probe of dbid (closing any it would replace).
func (p *probeConns) put(dbid int, c *pgx.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if old := p.conns[dbid]; old != nil {
		closeConn(old)
	}
	p.conns[dbid] = c
}

// probeConn returns a connection to probe inst with: the kept one, or a
// new one. The caller gives it back with keep (on success) or closes it.
func (s *Supervisor) probeConn(ctx context.Context, inst Instance) (*pgx.Conn, error) {
	if c := s.probes.take(inst.DBID); c != nil && !c.IsClosed() {
		return c, nil
	}
	return s.connect(ctx, inst.Address, inst.Port)
}
