package membership

import "fmt"

// EventKind says what changed about a member.
type EventKind int

const (
	EventJoin   EventKind = iota + 1 // alive for the first time, or again after dead or left
	EventLeave                       // left gracefully (Leave)
	EventFailed                      // declared dead by the failure detector
	EventUpdate                      // changed its Meta
	EventHealth                      // sent a newer health payload
)

func (k EventKind) String() string {
	switch k {
	case EventJoin:
		return "join"
	case EventLeave:
		return "leave"
	case EventFailed:
		return "failed"
	case EventUpdate:
		return "update"
	case EventHealth:
		return "health"
	default:
		return fmt.Sprintf("EventKind(%d)", int(k))
	}
}

// Event is a hint that a member changed, with the member as this node saw
// it right after the change. Events are dropped when the consumer is slow
// (see Config.Events): a consumer acts on the current Members, not on the
// sequence of events.
type Event struct {
	Kind   EventKind
	Member Member
}

// emitLocked sends e without blocking. m.mu is held: it orders the send
// against Shutdown setting quiet, after which the caller may close the
// channel.
func (m *Membership) emitLocked(e Event) {
	if m.events == nil || m.quiet {
		return
	}
	select {
	case m.events <- e:
	default:
		// Blocking here would stall memberlist's packet handler or hold its
		// node lock; the consumer's periodic reconcile repairs the loss.
		m.dropped.Add(1)
		m.log.Debug("event dropped: channel full", "event", e.Kind.String(), "member", e.Member.Name)
	}
}

// DroppedEvents is how many events were dropped because Config.Events was
// full.
func (m *Membership) DroppedEvents() uint64 {
	return m.dropped.Load()
}
