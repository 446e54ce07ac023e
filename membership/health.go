package membership

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/memberlist"
)

// MaxHealthSize is the largest health payload SetHealth takes. A report
// travels as one memberlist user message in a UDP packet (1400 bytes, less
// encryption and framing): MaxHealthSize plus the record header and a
// MaxNameLen name still leaves room for memberlist's own messages.
const MaxHealthSize = 1024

// ErrHealthTooLarge is returned by SetHealth for a payload over
// MaxHealthSize.
var ErrHealthTooLarge = errors.New("health payload too large")

var errTrailingBytes = errors.New("health message: trailing bytes after the record")

// The wire format, versioned by its first byte so that a newer agent can add
// message kinds without an older one misreading them:
//
//	user message:  msgHealth  | record
//	push-pull:     stateV1    | record*
//	record:        seq uint64 | nameLen uint8 | name | payloadLen uint16 | payload
//
// Binary rather than JSON: JSON would base64 the payload and a 1 KiB report
// would no longer fit a packet.
const (
	msgHealth byte = 1
	stateV1   byte = 1

	healthRecordHeader = 8 + 1 + 2
)

// healthRecord is one member's health report as gossip carries it. seq
// orders the reports of one member; it is never compared across members.
type healthRecord struct {
	name    string
	seq     uint64
	payload []byte
}

// healthEntry is the latest report this node holds for a member.
type healthEntry struct {
	seq     uint64
	payload []byte
	at      time.Time // local clock, monotonic reading included
}

func appendHealthRecord(b []byte, r healthRecord) []byte {
	b = binary.BigEndian.AppendUint64(b, r.seq)
	b = append(b, byte(len(r.name)))
	b = append(b, r.name...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(r.payload)))
	return append(b, r.payload...)
}

// readHealthRecord decodes the record at the start of b and returns the
// rest. The payload is copied: memberlist reuses its buffers.
func readHealthRecord(b []byte) (healthRecord, []byte, error) {
	var r healthRecord
	if len(b) < healthRecordHeader {
		return r, nil, errors.New("health record: truncated header")
	}
	r.seq = binary.BigEndian.Uint64(b)
	nameLen := int(b[8])
	if nameLen == 0 || nameLen > MaxNameLen {
		return r, nil, fmt.Errorf("health record: name length %d outside 1..%d", nameLen, MaxNameLen)
	}
	b = b[9:]
	if len(b) < nameLen+2 {
		return r, nil, errors.New("health record: truncated name")
	}
	r.name = string(b[:nameLen])
	payloadLen := int(binary.BigEndian.Uint16(b[nameLen:]))
	b = b[nameLen+2:]
	if payloadLen > MaxHealthSize {
		return r, nil, fmt.Errorf("health record from %q: payload of %d bytes over %d", r.name, payloadLen, MaxHealthSize)
	}
	if len(b) < payloadLen {
		return r, nil, fmt.Errorf("health record from %q: truncated payload", r.name)
	}
	r.payload = bytes.Clone(b[:payloadLen])
	return r, b[payloadLen:], nil
}

func encodeHealthMessage(r healthRecord) []byte {
	b := make([]byte, 0, 1+healthRecordHeader+len(r.name)+len(r.payload))
	return appendHealthRecord(append(b, msgHealth), r)
}

func encodeHealthState(recs []healthRecord) []byte {
	b := []byte{stateV1}
	for _, r := range recs {
		b = appendHealthRecord(b, r)
	}
	return b
}

// decodeHealthState reads a push-pull state, all or nothing.
func decodeHealthState(b []byte) ([]healthRecord, error) {
	if len(b) == 0 {
		return nil, errors.New("health state: empty")
	}
	if b[0] != stateV1 {
		return nil, fmt.Errorf("health state: unknown version %d", b[0])
	}
	var recs []healthRecord
	for rest := b[1:]; len(rest) > 0; {
		var r healthRecord
		var err error
		if r, rest, err = readHealthRecord(rest); err != nil {
			return nil, err
		}
		recs = append(recs, r)
	}
	return recs, nil
}

// healthBroadcast is named after the member it reports on, so that a newer
// report replaces a queued older one instead of both being sent.
type healthBroadcast struct {
	member string
	msg    []byte
}

var _ memberlist.NamedBroadcast = healthBroadcast{}

func (b healthBroadcast) Name() string    { return "health/" + b.member }
func (b healthBroadcast) Message() []byte { return b.msg }
func (b healthBroadcast) Finished()       {}
func (b healthBroadcast) Invalidates(other memberlist.Broadcast) bool {
	nb, ok := other.(memberlist.NamedBroadcast)
	return ok && nb.Name() == b.Name()
}

// SetHealth spreads this node's health payload (opaque here; at most
// MaxHealthSize bytes) to the other members, replacing the previous one.
// It returns at once: gossip delivers it within a few gossip intervals, and
// push-pull gives it to members that missed it or join later.
func (m *Membership) SetHealth(payload []byte) error {
	if len(payload) > MaxHealthSize {
		return fmt.Errorf("membership: health payload is %d bytes, over %d: %w", len(payload), MaxHealthSize, ErrHealthTooLarge)
	}
	if m.down.Load() {
		return ErrShutdown
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.publishLocked(bytes.Clone(payload))
	return nil
}

// publishLocked records and queues a new report of ours.
func (m *Membership) publishLocked(payload []byte) {
	m.healthSeq++
	m.health[m.name] = healthEntry{seq: m.healthSeq, payload: payload, at: time.Now()}
	m.queueHealthLocked(healthRecord{name: m.name, seq: m.healthSeq, payload: payload})
}

func (m *Membership) queueHealthLocked(r healthRecord) {
	m.bcast.QueueBroadcast(healthBroadcast{member: r.name, msg: encodeHealthMessage(r)})
}

// applyHealthLocked takes a report received by gossip or push-pull if it is
// newer than the one held, and says whether it did.
func (m *Membership) applyHealthLocked(r healthRecord) bool {
	if r.name == m.name {
		// Our own report coming back is the normal case. One we did not
		// send is from a previous run of this node under the same name,
		// with a seq at or above ours (the clock stepped back across the
		// restart). Jump past it, as memberlist refutes an old
		// incarnation, or the others would ignore our reports.
		cur, have := m.health[m.name]
		stale := r.seq > m.healthSeq || (r.seq == m.healthSeq && (!have || !bytes.Equal(r.payload, cur.payload)))
		if stale {
			m.healthSeq = r.seq
			if have {
				m.publishLocked(cur.payload)
			}
		}
		return false
	}
	if cur, ok := m.health[r.name]; ok && r.seq <= cur.seq {
		return false
	}
	m.health[r.name] = healthEntry{seq: r.seq, payload: r.payload, at: time.Now()}
	// memberlist sends a user broadcast only from the node that queued it,
	// to RetransmitMult*log10(N+1) random members: that reaches everyone in
	// a small cluster but not in a large one. Passing a newer report on, as
	// Serf does with its user events, makes it epidemic; the seq check
	// above ends the spread.
	m.queueHealthLocked(r)
	return true
}

// healthStateLocked is every report held, for push-pull: a member that
// joins late or missed a broadcast gets them all from any one peer.
func (m *Membership) healthStateLocked() []healthRecord {
	recs := make([]healthRecord, 0, len(m.health))
	for name, e := range m.health {
		recs = append(recs, healthRecord{name: name, seq: e.seq, payload: e.payload})
	}
	return recs
}

// receiveHealth applies reports and emits EventHealth for the new ones.
func (m *Membership) receiveHealth(recs []healthRecord) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range recs {
		if m.applyHealthLocked(r) {
			m.emitLocked(Event{Kind: EventHealth, Member: m.snapshotLocked(r.name)})
		}
	}
}
