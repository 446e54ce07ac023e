package membership

import (
	"net"
	"strconv"

	"github.com/hashicorp/memberlist"
)

// delegate is memberlist's Delegate for a Membership. It is a type of its
// own so that memberlist's callbacks stay out of Membership's method set.
// memberlist calls these from its packet and stream handlers: none of them
// may block.
type delegate struct {
	m *Membership
}

var _ memberlist.Delegate = delegate{}

// NodeMeta returns the metadata set by New or UpdateMeta, which checked it
// against the limit: memberlist panics on metadata over the limit.
func (d delegate) NodeMeta(limit int) []byte {
	d.m.mu.Lock()
	defer d.m.mu.Unlock()
	if len(d.m.metaBytes) > limit {
		d.m.log.Error("node metadata over memberlist's limit, advertising none", "bytes", len(d.m.metaBytes), "limit", limit)
		return nil
	}
	return d.m.metaBytes
}

// NotifyMsg receives a user message. memberlist reuses b after we return,
// so decoding copies what it keeps.
func (d delegate) NotifyMsg(b []byte) {
	if len(b) == 0 {
		return
	}
	switch b[0] {
	case msgHealth:
		r, rest, err := readHealthRecord(b[1:])
		if err == nil && len(rest) > 0 {
			err = errTrailingBytes
		}
		if err != nil {
			d.m.log.Warn("ignoring gossip message", "error", err)
			return
		}
		d.m.receiveHealth([]healthRecord{r})
	default:
		// A newer agent's message kind: not an error during an upgrade.
		d.m.log.Debug("ignoring gossip message of unknown kind", "kind", b[0])
	}
}

func (d delegate) GetBroadcasts(overhead, limit int) [][]byte {
	return d.m.bcast.GetBroadcasts(overhead, limit)
}

func (d delegate) LocalState(join bool) []byte {
	d.m.mu.Lock()
	defer d.m.mu.Unlock()
	return encodeHealthState(d.m.healthStateLocked())
}

func (d delegate) MergeRemoteState(buf []byte, join bool) {
	recs, err := decodeHealthState(buf)
	if err != nil {
		d.m.log.Warn("ignoring peer's push-pull health state", "error", err)
		return
	}
	d.m.receiveHealth(recs)
}

// eventDelegate is memberlist's EventDelegate for a Membership. memberlist
// calls it with its node lock held, which is the only time a *Node's fields
// can be read without racing memberlist's in-place updates
// (hashicorp/memberlist#306): handleNode copies what it needs right away.
// memberlist's ChannelEventDelegate would block here when the channel is
// full, stalling all of gossip.
type eventDelegate struct {
	m *Membership
}

var _ memberlist.EventDelegate = eventDelegate{}

func (e eventDelegate) NotifyJoin(n *memberlist.Node)   { e.m.handleNode(EventJoin, n) }
func (e eventDelegate) NotifyUpdate(n *memberlist.Node) { e.m.handleNode(EventUpdate, n) }
func (e eventDelegate) NotifyLeave(n *memberlist.Node) {
	// memberlist reports a graceful leave and a death the same way, and
	// n.State is never set: only its node table knows (see stateReader).
	if r := e.m.states.Load(); r != nil {
		if state, ok := r.stateInCallback(n.Name); ok && state == memberlist.StateLeft {
			e.m.handleNode(EventLeave, n)
			return
		}
	}
	e.m.handleNode(EventFailed, n)
}

// handleNode records a member's change and emits it.
func (m *Membership) handleNode(kind EventKind, n *memberlist.Node) {
	mem := Member{
		Name:   n.Name,
		Addr:   net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port))),
		Status: StatusAlive,
	}
	meta, metaErr := decodeMeta(n.Meta)
	switch kind {
	case EventLeave:
		mem.Status = StatusLeft
	case EventFailed:
		mem.Status = StatusDead
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	prev, seen := m.members[mem.Name]
	switch {
	case metaErr == nil:
		mem.Meta = meta
	case seen:
		mem.Meta = prev.Meta
	default:
		mem.Meta = Meta{Name: mem.Name}
	}
	if metaErr != nil && kind != EventLeave && kind != EventFailed {
		m.log.Warn("member has unreadable metadata", "member", mem.Name, "addr", mem.Addr, "error", metaErr)
	}
	m.members[mem.Name] = mem
	m.countAliveLocked()

	log, msg := m.log.Info, "member joined"
	switch kind {
	case EventLeave:
		msg = "member left"
	case EventFailed:
		msg = "member failed"
	case EventUpdate:
		log, msg = m.log.Debug, "member metadata updated"
	}
	log(msg, "member", mem.Name, "addr", mem.Addr, "status", string(mem.Status), "ver", mem.Meta.Version)
	m.emitLocked(Event{Kind: kind, Member: m.snapshotLocked(mem.Name)})
}
