package topology

import (
	"maps"
	"slices"
	"time"
)

// LeaseExpired reports whether more than d has passed between renewed and
// now. Both times come from one host's monotonic clock (safety rule 5:
// leases never compare clocks across hosts). The agent's lease and the
// leader's count of lost hosts are the same comparison seen from the two
// ends, the leader's wait being the lease plus a margin for clock drift.
func LeaseExpired(renewed, now time.Time, d time.Duration) bool {
	return now.Sub(renewed) > d
}

// LastHeard is the leader's table of when it last heard from each host's
// agent, for one term. A new term starts a new table: a leader cannot know
// what its predecessor heard, so it gives every host a full wait from the
// start of its own term (Nomad's heartbeat.go resets its timers the same
// way). A LastHeard is never changed in place: its methods return the
// next table, so a value handed out stays what it was.
type LastHeard struct {
	start time.Time
	at    map[string]time.Time
	// heard: the hosts heard from this term (at holds a report's time,
	// not a first counting); reporting: the hosts whose reports arrived
	// this term, on whatever version (Reported).
	heard, reporting map[string]bool
}

// NewLastHeard is the table of a term that started at termStart.
func NewLastHeard(termStart time.Time) LastHeard {
	return LastHeard{start: termStart}
}

// Heard returns the table with host heard from at at. A time older than
// what the table holds changes nothing: a late report does not make a
// host look lost sooner.
func (h LastHeard) Heard(host string, at time.Time) LastHeard {
	return h.with(host, at, true)
}

// Hear is Heard in place, for the table's one holder (the leader, which
// keeps one per term): Heard copies the table on every report, and a
// report a second from each of a thousand hosts made that copy a tenth of
// the leader's CPU. A copy of the table taken before shares its maps.
func (h *LastHeard) Hear(host string, at time.Time) {
	if h.at == nil {
		h.at = map[string]time.Time{}
	}
	if prev, ok := h.at[host]; !ok || at.After(prev) {
		h.at[host] = at
	}
	if !h.heard[host] {
		if h.heard == nil {
			h.heard = map[string]bool{}
		}
		h.heard[host] = true
	}
}

// with records at for host, as heard from or (heard false) as first
// counted.
func (h LastHeard) with(host string, at time.Time, heard bool) LastHeard {
	if prev, ok := h.at[host]; ok && !at.After(prev) && (!heard || h.heard[host]) {
		return h
	}
	next := h
	next.at = maps.Clone(h.at)
	if next.at == nil {
		next.at = map[string]time.Time{}
	}
	if prev, ok := h.at[host]; !ok || at.After(prev) {
		next.at[host] = at
	}
	if heard && !h.heard[host] {
		next.heard = maps.Clone(h.heard)
		if next.heard == nil {
			next.heard = map[string]bool{}
		}
		next.heard[host] = true
	}
	return next
}

// Reported returns the table with a report of host's arrived, heard
// from or not (made on an older version than the leader's: a client whose
// query has not brought the latest topology yet, a Raft follower still
// replaying its log). Such a host, never yet heard from this term, gets
// LostWithGrace's grace: it is alive and catching up, and counting it
// lost would mark its instances down before it ever reported on them.
func (h LastHeard) Reported(host string) LastHeard {
	if h.reporting[host] {
		return h
	}
	next := h
	next.reporting = maps.Clone(h.reporting)
	if next.reporting == nil {
		next.reporting = map[string]bool{}
	}
	next.reporting[host] = true
	return next
}

// since is when host's wait started: the last time it was heard from or
// first counted, and never before the term started.
func (h LastHeard) since(host string) (time.Time, bool) {
	at, ok := h.at[host]
	if !ok || at.Before(h.start) {
		return h.start, ok
	}
	return at, true
}

// Lost returns the hosts whose wait has run out at now: not heard from
// for longer than wait (the lease plus its margin) since they were last
// heard from, first counted by this table, or the term started. By then
// their agents have fenced their primaries, so their instances count as
// failed. A host the table has never seen (new in the topology, or not
// yet heard from this term) is counted from now on: it gets a full wait.
// The returned table records those first countings.
func (h LastHeard) Lost(hosts []string, now time.Time, wait time.Duration) (LastHeard, map[string]bool) {
	return h.LostWithGrace(hosts, now, wait, 0)
}

// LostWithGrace is Lost, with grace added to the wait of a host that has
// reported this term but was never heard from (every report made on an
// older version than the leader's): it is catching up, not gone. Only a
// longer wait: the host's lease was renewed by no report of this term,
// so it has fenced by the end of the plain wait already, and promoting
// later is as safe. A host heard once, or never reporting, waits wait.
func (h LastHeard) LostWithGrace(hosts []string, now time.Time, wait, grace time.Duration) (LastHeard, map[string]bool) {
	next := h
	lost := map[string]bool{}
	for _, host := range hosts {
		since, ok := h.since(host)
		if !ok {
			next = next.with(host, maxTime(now, h.start), false)
			continue
		}
		w := wait
		if h.reporting[host] && !h.heard[host] {
			w += grace
		}
		if LeaseExpired(since, now, w) {
			lost[host] = true
		}
	}
	return next, lost
}

// NextLost is the earliest time after now at which one of hosts, not
// lost at now, will be (LostWithGrace with the same wait and grace), and
// false if no host can be. The leader reconciles then rather than at its
// next tick: a lost host fails over lease plus margin after it was last
// heard, not up to a probe interval later.
func (h LastHeard) NextLost(hosts []string, now time.Time, wait, grace time.Duration) (time.Time, bool) {
	var next time.Time
	found := false
	for _, host := range hosts {
		since, ok := h.since(host)
		if !ok {
			since = maxTime(now, h.start) // counted from now (LostWithGrace)
		}
		w := wait
		if h.reporting[host] && !h.heard[host] {
			w += grace
		}
		if LeaseExpired(since, now, w) {
			continue // lost already
		}
		at := since.Add(w)
		if !found || at.Before(next) {
			next, found = at, true
		}
	}
	return next, found
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// Hosts returns the hosts that hold instances, sorted, each once.
func (t *Topology) Hosts() []string {
	var out []string
	for _, s := range t.Segments {
		out = append(out, s.Hostname)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Received is one instance's latest report as the leader holds it: the
// observation and when it arrived on the leader's monotonic clock.
type Received struct {
	Observation Observation
	At          time.Time
}

// FreshObservations returns the observations recent enough to act on: the
// ones received at most maxAge before now. An older report may describe
// an instance that has changed since; acting on it could fail over a
// primary that is fine, or miss that one is not.
func FreshObservations(reports map[int]Received, now time.Time, maxAge time.Duration) map[int]Observation {
	out := make(map[int]Observation, len(reports))
	for dbid, r := range reports {
		if Fresh(r.At, now, maxAge) {
			out[dbid] = r.Observation
		}
	}
	return out
}

// Fresh reports whether a report received at is young enough at now to
// be acted on (FreshObservations keeps it).
func Fresh(at, now time.Time, maxAge time.Duration) bool { return now.Sub(at) <= maxAge }

// WithLostHosts returns obs with a failed observation for every instance
// on a lost host, in place of whatever older report there was: that
// host's agent has fenced its primaries by now (safety rule 5), so its
// mirrors may be promoted. obs is not modified.
func WithLostHosts(t *Topology, obs map[int]Observation, lost map[string]bool) map[int]Observation {
	out := maps.Clone(obs)
	if out == nil {
		out = map[int]Observation{}
	}
	for _, s := range t.Segments {
		if lost[s.Hostname] {
			out[s.DBID] = Observation{DBID: s.DBID, Failed: true, ConfigVersion: t.ConfigVersion}
		}
	}
	return out
}

// PendingRenewals holds the leader's acknowledgements of an agent's
// reports that may not renew its lease yet: each renews the lease from
// the moment its report was sent, but only once the agent's own copy of
// the topology is at least the version the leader had committed when it
// acknowledged (a primary demoted meanwhile must not get its fence
// lifted by a stale topology). Holding them, rather than dropping each
// one whose version the agent has not applied yet, keeps an agent's
// lease alive while the leader commits faster than a report round trip:
// there the agent is always an entry or two behind at the moment the
// acknowledgement arrives, yet applies that entry milliseconds later.
type PendingRenewals struct {
	acks []pendingAck
}

type pendingAck struct {
	sent    time.Time
	version uint64
}

// maxPendingRenewals bounds the acknowledgements held; when full the
// oldest goes (a newer one renews further anyway, once applied).
const maxPendingRenewals = 16

// Acked records an acknowledgement of a report sent at sent, by a leader
// at config version version.
func (p *PendingRenewals) Acked(sent time.Time, version uint64) {
	if len(p.acks) == maxPendingRenewals {
		p.acks = append(p.acks[:0], p.acks[1:]...)
	}
	p.acks = append(p.acks, pendingAck{sent: sent, version: version})
}

// Applied returns the latest send time of the acknowledgements whose
// version is at most applied, the version of the topology the agent
// acts on, and forgets them; ok is false when none is.
func (p *PendingRenewals) Applied(applied uint64) (renewed time.Time, ok bool) {
	keep := p.acks[:0]
	for _, a := range p.acks {
		if a.version > applied {
			keep = append(keep, a)
			continue
		}
		if !ok || a.sent.After(renewed) {
			renewed, ok = a.sent, true
		}
	}
	p.acks = keep
	return renewed, ok
}

// RenewsLease reports whether a report made on config version applied,
// acknowledged by a leader that has committed version committed, renews
// its agent's lease. An agent renews only once it has applied what the
// leader acknowledges (it must act on the current topology first); so the
// leader counts the agent heard only then. A follower whose Raft is
// stalled (its Raft port cut, its disk full) while its reports still get
// through is then lost after lease plus margin, as its fenced primaries
// are, rather than heard for ever with no writable primary.
func RenewsLease(applied, committed uint64) bool { return applied >= committed }
