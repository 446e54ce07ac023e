package membership

import (
	"bytes"
	"strings"
	"testing"
)

func TestHealthCodec(t *testing.T) {
	t.Parallel()
	recs := []healthRecord{
		{name: "a", seq: 1, payload: []byte("x")},
		{name: strings.Repeat("n", MaxNameLen), seq: 1 << 63, payload: bytes.Repeat([]byte{0xff}, MaxHealthSize)},
		{name: "empty", seq: 7, payload: []byte{}},
	}
	t.Run("state round trip", func(t *testing.T) {
		got, err := decodeHealthState(encodeHealthState(recs))
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(recs) {
			t.Fatalf("got %d records, want %d", len(got), len(recs))
		}
		for i := range recs {
			if got[i].name != recs[i].name || got[i].seq != recs[i].seq || !bytes.Equal(got[i].payload, recs[i].payload) {
				t.Errorf("record %d: got %+v, want %+v", i, got[i], recs[i])
			}
		}
	})
	t.Run("a full-size message fits an encrypted packet with room to spare", func(t *testing.T) {
		// 1400-byte packet, less 2 (compound header), 29 (AES-GCM), 3
		// (per-message framing), less 200 for memberlist's own messages.
		if n := len(encodeHealthMessage(recs[1])); n > 1400-2-29-3-200 {
			t.Errorf("largest health message is %d bytes", n)
		}
	})
	bad := []struct {
		name string
		b    []byte
		want string
	}{
		{"empty state", nil, "empty"},
		{"unknown version", []byte{9}, "unknown version 9"},
		{"truncated header", []byte{stateV1, 0, 0}, "truncated header"},
		{"empty name", append([]byte{stateV1}, make([]byte, 11)...), "name length 0"},
		{"payload over the limit", append(encodeHealthState(nil), appendHealthRecord(nil, healthRecord{name: "a", payload: make([]byte, MaxHealthSize+1)})...), "over 1024"},
		{"truncated payload", encodeHealthState(recs[:1])[:13], "truncated payload"},
	}
	for _, tc := range bad {
		t.Run("rejects "+tc.name, func(t *testing.T) {
			if _, err := decodeHealthState(tc.b); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("decodeHealthState: %v, want %q", err, tc.want)
			}
		})
	}
}

func FuzzDecodeHealthState(f *testing.F) {
	f.Add(encodeHealthState([]healthRecord{{name: "a", seq: 1, payload: []byte("x")}}))
	f.Add([]byte{stateV1})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		recs, err := decodeHealthState(b)
		if err != nil {
			return
		}
		if again := encodeHealthState(recs); !bytes.Equal(again, b) {
			t.Fatalf("decoded %x, re-encoded %x", b, again)
		}
	})
}

func TestMembership_HealthRefutesOldRun(t *testing.T) {
	t.Parallel()
	a := startNode(t, "a")
	if err := a.SetHealth([]byte("now")); err != nil {
		t.Fatal(err)
	}
	seqOf := func() uint64 { a.mu.Lock(); defer a.mu.Unlock(); return a.healthSeq }
	seq := seqOf()
	d := delegate{a}

	t.Run("our own report coming back changes nothing", func(t *testing.T) {
		d.NotifyMsg(encodeHealthMessage(healthRecord{name: "a", seq: seq, payload: []byte("now")}))
		if got := seqOf(); got != seq {
			t.Errorf("seq moved from %d to %d", seq, got)
		}
	})
	t.Run("a previous run's report makes us jump past it", func(t *testing.T) {
		d.NotifyMsg(encodeHealthMessage(healthRecord{name: "a", seq: seq + 100, payload: []byte("old run")}))
		if got := seqOf(); got != seq+101 {
			t.Errorf("seq is %d, want %d", got, seq+101)
		}
		if h := healthOf(a, "a"); h != "now" {
			t.Errorf("own payload became %q", h)
		}
		msgs := a.bcast.GetBroadcasts(0, 1400)
		if len(msgs) != 1 {
			t.Fatalf("queued: %q", msgs)
		}
		r, _, err := readHealthRecord(msgs[0][1:])
		if err != nil || r.seq != seq+101 || string(r.payload) != "now" {
			t.Errorf("re-sent report %+v, %v", r, err)
		}
	})
}
