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
}

// NewLastHeard is the table of a term that started at termStart.
func NewLastHeard(termStart time.Time) LastHeard {
	return LastHeard{start: termStart}
}

// Heard returns the table with host heard from at at. A time older than
// what the table holds changes nothing: a late report does not make a
// host look lost sooner.
func (h LastHeard) Heard(host string, at time.Time) LastHeard {
	if prev, ok := h.at[host]; ok && !at.After(prev) {
		return h
	}
	next := LastHeard{start: h.start, at: maps.Clone(h.at)}
	if next.at == nil {
		next.at = map[string]time.Time{}
	}
	next.at[host] = at
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
	next := h
	lost := map[string]bool{}
	for _, host := range hosts {
		since, ok := h.since(host)
		if !ok {
			next = next.Heard(host, maxTime(now, h.start))
			continue
		}
		if LeaseExpired(since, now, wait) {
			lost[host] = true
		}
	}
	return next, lost
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
		if now.Sub(r.At) <= maxAge {
			out[dbid] = r.Observation
		}
	}
	return out
}

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

// RenewsLease reports whether a report made on config version applied,
// acknowledged with renew (CommitTimes.RenewVersion at the ack), renews
// its agent's lease. The agent renews on the same comparison, with the
// renew version the ack carries, so the leader counts it heard exactly
// when its lease is renewed. A follower whose Raft is stalled (its Raft
// port cut, its disk full) while its reports still get through stops
// renewing once the leader commits past it, and is lost after lease plus
// margin, as its fenced primaries are, rather than heard for ever with
// no writable primary.
func RenewsLease(applied, renew uint64) bool { return applied >= renew }

// CommitTimes is the leader's record, for one term, of when it saw each
// config version committed, on its own monotonic clock. It decides what
// an acknowledged report must have applied to renew a lease: the version
// committed lag ago, not the one committed now. Requiring the latest
// version would take the lease of a healthy agent whenever the cluster
// commits faster than a report's round trip plus its apply (a rebalance
// of many contents, a burst of operator commands): it would never catch
// up, fence its primaries and have its mirrors promoted, a failover storm
// caused by the commit rate alone. An agent that applies with a lag under
// lag keeps its lease; one that stopped applying loses it lag after the
// leader commits past it, then is lost lease plus margin later.
// A CommitTimes is never changed in place: its methods return the next
// record, so a value handed out stays what it was.
type CommitTimes struct {
	lag time.Duration
	// seen holds versions and times both increasing: the newest version
	// seen at or before now-lag, then every later one.
	seen []commitSeen
}

type commitSeen struct {
	version uint64
	at      time.Time
}

// NewCommitTimes is an empty record for a term, with the lag an applied
// version may have behind the committed one (a fraction of the lease).
func NewCommitTimes(lag time.Duration) CommitTimes {
	return CommitTimes{lag: lag}
}

// Committed returns the record with version seen committed at at. A
// version no newer than the latest recorded changes nothing (a report
// acknowledged concurrently may come in late). A time before the latest
// recorded one is taken as that one: times stay ordered, and a version
// is never taken as committed earlier than one before it. Entries no
// longer needed to answer RenewVersion at at or later are dropped.
func (c CommitTimes) Committed(version uint64, at time.Time) CommitTimes {
	if n := len(c.seen); n > 0 {
		last := c.seen[n-1]
		if version <= last.version {
			return c
		}
		at = maxTime(at, last.at)
	}
	// Keep the newest entry at or before at-lag (the answer from now on)
	// and every later one.
	keep := 0
	for i, s := range c.seen {
		if !s.at.After(at.Add(-c.lag)) {
			keep = i
		}
	}
	next := CommitTimes{lag: c.lag, seen: make([]commitSeen, 0, len(c.seen)-keep+1)}
	next.seen = append(next.seen, c.seen[keep:]...)
	next.seen = append(next.seen, commitSeen{version: version, at: at})
	return next
}

// RenewVersion is the version a report acknowledged at now must have been
// made on to renew its agent's lease: the newest version seen committed
// at or before now-lag. When nothing recorded is that old (the term began
// less than lag ago) it is the oldest version recorded: when that one was
// committed is not known, so nothing older can be shown to be enough.
// An empty record requires nothing (0).
func (c CommitTimes) RenewVersion(now time.Time) uint64 {
	if len(c.seen) == 0 {
		return 0
	}
	v := c.seen[0].version
	for _, s := range c.seen {
		if s.at.After(now.Add(-c.lag)) {
			break
		}
		v = s.version
	}
	return v
}
