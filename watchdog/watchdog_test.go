package watchdog

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gpagent/gpagent/topology"
)

const (
	lease     = 3 * time.Second
	grace     = 500 * time.Millisecond
	liveGrace = 750 * time.Millisecond
	boot      = "boot-a"
)

func TestDecide(t *testing.T) {
	primaries := Instances{ConfigVersion: 7, Instances: []topology.Segment{
		{DBID: 2, Content: 0, Role: topology.RolePrimary},
		{DBID: 3, Content: 1, Role: topology.RolePrimary},
		{DBID: 5, Content: 2, Role: topology.RoleMirror},
	}}
	mirrorsOnly := Instances{ConfigVersion: 7, Instances: []topology.Segment{{DBID: 5, Content: 2, Role: topology.RoleMirror}}}
	const renewed = int64(100 * time.Second)
	end := renewed + int64(lease) + int64(liveGrace) // a running agent's
	endStopped := renewed + int64(lease) + int64(grace)
	stamp := Stamp{BootID: boot, Renewed: renewed}
	both := Fenced{Renewed: renewed, DBIDs: []int{2, 3}}
	for _, tc := range []struct {
		name  string
		v     view
		now   int64
		agent agentState
		kill  []int
	}{
		{"lease running", view{stamp: stamp, stampOK: true, instances: primaries}, renewed + int64(lease), agentRunning, nil},
		{"within the grace", view{stamp: stamp, stampOK: true, instances: primaries}, end - 1, agentRunning, nil},
		{"a running agent, past the stopped agent's grace: still its own to fence", view{stamp: stamp, stampOK: true, instances: primaries}, endStopped, agentRunning, nil},
		{"a stopped agent, past its grace: killed", view{stamp: stamp, stampOK: true, instances: primaries}, endStopped, agentStopped, []int{2, 3}},
		{"a stopped agent that fenced them: killed all the same", view{stamp: stamp, stampOK: true, fenced: both, fencedOK: true, instances: primaries}, endStopped, agentStopped, []int{2, 3}},
		{"a stopped agent within its grace", view{stamp: stamp, stampOK: true, instances: primaries}, endStopped - 1, agentStopped, nil},
		{"past the grace, not fenced by the agent", view{stamp: stamp, stampOK: true, instances: primaries}, end, agentRunning, []int{2, 3}},
		{"past the grace, the agent fenced them", view{stamp: stamp, stampOK: true, fenced: both, fencedOK: true, instances: primaries}, end, agentRunning, nil},
		{"the agent fenced one of them", view{stamp: stamp, stampOK: true, fenced: Fenced{Renewed: renewed, DBIDs: []int{3}}, fencedOK: true, instances: primaries}, end, agentRunning, []int{2}},
		{"the agent fenced them for an older lease", view{stamp: stamp, stampOK: true, fenced: Fenced{Renewed: renewed - 1, DBIDs: []int{2, 3}}, fencedOK: true, instances: primaries}, end, agentRunning, []int{2, 3}},
		{"the agent is gone: its fence is not enough", view{stamp: stamp, stampOK: true, fenced: both, fencedOK: true, instances: primaries}, end, agentGone, []int{2, 3}},
		{"no primary here", view{stamp: stamp, stampOK: true, instances: mirrorsOnly}, end, agentRunning, nil},
		{"no lease ever recorded", view{instances: primaries}, 1, agentRunning, []int{2, 3}},
		{"no lease ever recorded, fenced by the agent", view{fenced: Fenced{DBIDs: []int{2, 3}}, fencedOK: true, instances: primaries}, 1, agentRunning, nil},
		{"a lease of another boot", view{stamp: Stamp{BootID: "boot-b", Renewed: renewed}, stampOK: true, instances: primaries}, renewed, agentRunning, []int{2, 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := decide(tc.v, boot, tc.now, lease, grace, liveGrace, tc.agent)
			var got []int
			for _, s := range d.kill {
				got = append(got, s.DBID)
			}
			if !slices.Equal(got, tc.kill) {
				t.Errorf("kill %v, want %v (%+v)", got, tc.kill, d)
			}
			if d.wait <= 0 || d.wait > maxSleep {
				t.Errorf("wait %s: want in (0, %s]", d.wait, maxSleep)
			}
		})
	}
	// Asleep until the deadline, never past it.
	if d := decide(view{stamp: stamp, stampOK: true, instances: primaries}, boot, end-int64(200*time.Millisecond), lease, grace, liveGrace, agentRunning); d.wait != 200*time.Millisecond {
		t.Errorf("200 ms before the deadline: wait %s, want 200ms", d.wait)
	}
}

// fakeHost is a data dir, a boot clock the test moves, and instances
// that the watchdog may kill.
type fakeHost struct {
	t   *testing.T
	dir string

	mu      sync.Mutex
	now     int64
	running map[int]bool
	kills   []int
	alive   bool
	stopped bool
	ticks   chan time.Time
}

func newFakeHost(t *testing.T) *fakeHost {
	h := &fakeHost{t: t, dir: t.TempDir(), now: int64(100 * time.Second), running: map[int]bool{2: true, 4: true}, alive: true, ticks: make(chan time.Time)}
	b := []byte(`{"config_version":3,"instances":[` +
		`{"dbid":2,"content":0,"role":"p","data_dir":"/d/2"},` +
		`{"dbid":4,"content":1,"role":"p","data_dir":"/d/4"},` +
		`{"dbid":7,"content":2,"role":"m","data_dir":"/d/7"}]}`)
	h.write(InstancesFile, b)
	return h
}

func (h *fakeHost) write(name string, b []byte) {
	h.t.Helper()
	if err := WriteFileAtomic(filepath.Join(h.dir, name), b); err != nil {
		h.t.Fatal(err)
	}
}

func (h *fakeHost) renew() {
	h.mu.Lock()
	now := h.now
	h.mu.Unlock()
	h.write(LeaseFile, FormatStamp(Stamp{BootID: boot, Renewed: now}))
}

func (h *fakeHost) advance(d time.Duration) {
	h.mu.Lock()
	h.now += int64(d)
	h.mu.Unlock()
}

// killed lists the dbids killed so far, in order of dbid (the watchdog
// kills in parallel).
func (h *fakeHost) killed() []int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Sorted(slices.Values(h.kills))
}

func (h *fakeHost) config() Config {
	return Config{
		DataDir: h.dir, Lease: lease, Grace: grace, LiveGrace: liveGrace, BootID: boot,
		Now: func() (int64, error) {
			h.mu.Lock()
			defer h.mu.Unlock()
			return h.now, nil
		},
		AgentAlive: func() bool {
			h.mu.Lock()
			defer h.mu.Unlock()
			return h.alive
		},
		AgentStopped: func() bool {
			h.mu.Lock()
			defer h.mu.Unlock()
			return h.stopped
		},
		Running: func(s topology.Segment) bool {
			h.mu.Lock()
			defer h.mu.Unlock()
			return h.running[s.DBID]
		},
		Kill: func(_ context.Context, s topology.Segment) error {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.kills = append(h.kills, s.DBID)
			h.running[s.DBID] = false
			return nil
		},
		After: func(time.Duration) <-chan time.Time { return h.ticks },
	}
}

// step lets the watchdog make one more look (it has made the previous
// one when it asks for its next wait).
func (h *fakeHost) step() {
	h.t.Helper()
	select {
	case h.ticks <- time.Time{}:
	case <-time.After(10 * time.Second):
		h.t.Fatal("the watchdog did not wait for its next look")
	}
}

// endsWithin lets the watchdog make up to looks more looks and reports
// whether it ended, without error, meanwhile.
func (h *fakeHost) endsWithin(done <-chan error, looks int) bool {
	h.t.Helper()
	for range looks {
		select {
		case err := <-done:
			if err != nil {
				h.t.Fatal(err)
			}
			return true
		case h.ticks <- time.Time{}:
		}
	}
	select {
	case err := <-done:
		if err != nil {
			h.t.Fatal(err)
		}
		return true
	case <-time.After(time.Second):
		return false
	}
}

// A frozen agent: its lease file stops changing. The watchdog kills both
// primaries (not the mirror) once lease plus grace have passed, not
// before; and a running agent that records its fence is left alone.
func TestRun_KillsThePrimariesOfAFrozenAgent(t *testing.T) {
	h := newFakeHost(t)
	h.renew()
	h.stopped = true // SIGSTOPped
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- Run(ctx, h.config()) }()
	h.step() // first look done: lease fresh
	h.advance(lease)
	h.step()
	if k := h.killed(); len(k) != 0 {
		t.Fatalf("killed %v while the lease had %s of grace left", k, grace)
	}
	h.advance(grace)
	h.step()
	h.step()
	if k := h.killed(); len(k) != 2 || k[0] != 2 || k[1] != 4 {
		t.Fatalf("killed %v, want the two primaries [2 4]", k)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestRun_LeavesAFencingAgentAlone(t *testing.T) {
	h := newFakeHost(t)
	h.renew()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = Run(ctx, h.config()) }()
	h.step()
	h.advance(lease + time.Millisecond)
	st, _ := ReadStamp(h.dir)
	h.write(FencedFile, FormatFenced(Fenced{Renewed: st.Renewed, DBIDs: []int{2, 4}}))
	h.advance(liveGrace)
	h.step()
	h.step()
	if k := h.killed(); len(k) != 0 {
		t.Fatalf("killed %v that the live agent had fenced", k)
	}
	// A new config version that changes nothing here: still left alone.
	h.write(InstancesFile, []byte(`{"config_version":4,"instances":[{"dbid":2,"content":0,"role":"p","data_dir":"/d/2"},{"dbid":4,"content":1,"role":"p","data_dir":"/d/4"}]}`))
	h.step()
	if k := h.killed(); len(k) != 0 {
		t.Fatalf("killed %v after a config version that changed nothing on the host", k)
	}
	// The topology gives the host a new primary the agent has not fenced
	// yet: that one is the watchdog's.
	h.mu.Lock()
	h.running[9] = true
	h.mu.Unlock()
	h.write(InstancesFile, []byte(`{"config_version":5,"instances":[{"dbid":2,"content":0,"role":"p","data_dir":"/d/2"},{"dbid":4,"content":1,"role":"p","data_dir":"/d/4"},{"dbid":9,"content":3,"role":"p","data_dir":"/d/9"}]}`))
	h.step()
	h.step()
	if k := h.killed(); len(k) != 1 || k[0] != 9 {
		t.Fatalf("killed %v, want [9] (a primary the agent's fence does not cover)", k)
	}
}

// An agent that exited: the watchdog fences at the lease's end and ends;
// an agent restarted meanwhile (a new renewal) ends it at once.
func TestRun_EndsAfterItsAgent(t *testing.T) {
	t.Run("lease runs out", func(t *testing.T) {
		h := newFakeHost(t)
		h.renew()
		h.alive = false
		done := make(chan error, 1)
		go func() { done <- Run(context.Background(), h.config()) }()
		h.step()
		h.advance(lease + grace)
		if !h.endsWithin(done, 5) {
			t.Fatal("the watchdog of a gone agent did not end after fencing")
		}
		if k := h.killed(); len(k) != 2 {
			t.Fatalf("ended having killed %v, want both primaries", k)
		}
	})
	t.Run("a new agent renews", func(t *testing.T) {
		h := newFakeHost(t)
		h.renew()
		h.alive = false
		done := make(chan error, 1)
		go func() { done <- Run(context.Background(), h.config()) }()
		h.step()
		h.advance(time.Second)
		h.renew()
		// It ends at its next look (which may be under way already).
		if !h.endsWithin(done, 2) {
			t.Fatal("the watchdog went on after a new agent renewed the lease")
		}
		if k := h.killed(); len(k) != 0 {
			t.Fatalf("killed %v of the new agent", k)
		}
	})
}

// A data dir wiped under a stopped agent: the instance list is gone, the
// postmasters it named run on. The watchdog kills them from the list it
// read last.
func TestRun_WipedDataDir(t *testing.T) {
	h := newFakeHost(t)
	h.renew()
	h.alive = false
	done := make(chan error, 1)
	go func() { done <- Run(context.Background(), h.config()) }()
	h.step()
	for _, f := range []string{InstancesFile, LeaseFile} {
		if err := os.Remove(filepath.Join(h.dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	if !h.endsWithin(done, 5) {
		t.Fatal("the watchdog of a wiped, stopped agent did not end")
	}
	if k := h.killed(); !slices.Equal(k, []int{2, 4}) {
		t.Fatalf("ended having killed %v, want both primaries of the wiped list", k)
	}
}

// A new agent started on the data dir, with its own watchdog: the old
// one, whose agent is gone, hands over at once, before the old lease
// ends (the new watchdog honours the new agent's fence records, the old
// one would not).
func TestRun_HandsOverToANewAgentsWatchdog(t *testing.T) {
	h := newFakeHost(t)
	h.renew()
	h.alive = false
	cfg := h.config()
	cfg.ID = "old"
	done := make(chan error, 1)
	go func() { done <- Run(context.Background(), cfg) }()
	h.step()
	h.write(WatchdogFile, []byte("new\n"))
	h.advance(lease + grace)
	if !h.endsWithin(done, 3) {
		t.Fatal("the old watchdog did not hand over")
	}
	if k := h.killed(); len(k) != 0 {
		t.Fatalf("the old watchdog killed %v after a new one took charge", k)
	}
}

// An agent that stopped its instances as it exited leaves nothing to
// guard: its watchdog ends at once (asked to, or at its first look after
// the agent is gone), killing nothing. Asked while a primary still runs,
// it stays.
func TestRun_EndsWithNothingToGuard(t *testing.T) {
	t.Run("agent gone, instances stopped", func(t *testing.T) {
		h := newFakeHost(t)
		h.renew()
		h.alive = false
		h.running = map[int]bool{}
		if err := Run(context.Background(), h.config()); err != nil {
			t.Fatal(err)
		}
		if k := h.killed(); len(k) != 0 {
			t.Fatalf("killed %v", k)
		}
	})
	t.Run("asked to stop, instances stopped", func(t *testing.T) {
		h := newFakeHost(t)
		h.renew()
		stop := make(chan struct{})
		cfg := h.config()
		cfg.Stop = stop
		done := make(chan error, 1)
		go func() { done <- Run(context.Background(), cfg) }()
		h.step()
		h.mu.Lock()
		h.running = map[int]bool{}
		h.mu.Unlock()
		close(stop)
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the watchdog did not end when asked with nothing to guard")
		}
	})
	t.Run("asked to stop, a primary still runs", func(t *testing.T) {
		h := newFakeHost(t)
		h.renew()
		stop := make(chan struct{})
		cfg := h.config()
		cfg.Stop = stop
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- Run(ctx, cfg) }()
		h.step()
		close(stop)
		h.step() // still looking: it stayed
		select {
		case err := <-done:
			t.Fatalf("the watchdog ended while a primary runs: %v", err)
		default:
		}
	})
}

func TestFiles_RoundTrip(t *testing.T) {
	dir := t.TempDir()
	if _, ok := ReadStamp(dir); ok {
		t.Fatal("a missing lease file read as a lease")
	}
	if err := os.WriteFile(filepath.Join(dir, LeaseFile), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, ok := ReadStamp(dir); ok {
		t.Fatal("a garbage lease file read as a lease")
	}
	want := Stamp{BootID: "b", Renewed: 42}
	if err := WriteFileAtomic(filepath.Join(dir, LeaseFile), FormatStamp(want)); err != nil {
		t.Fatal(err)
	}
	if got, ok := ReadStamp(dir); !ok || got != want {
		t.Fatalf("stamp %+v %v, want %+v", got, ok, want)
	}
	for _, f := range []Fenced{{Renewed: 42, DBIDs: []int{9, 12}}, {Renewed: 43}} {
		if err := WriteFileAtomic(filepath.Join(dir, FencedFile), FormatFenced(f)); err != nil {
			t.Fatal(err)
		}
		if got, ok := ReadFenced(dir); !ok || got.Renewed != f.Renewed || !slices.Equal(got.DBIDs, f.DBIDs) {
			t.Fatalf("fenced %+v %v, want %+v", got, ok, f)
		}
	}
	if rec, err := ReadInstances(dir); err != nil || len(rec.Instances) != 0 {
		t.Fatalf("no instances file: %+v %v, want none and no error", rec, err)
	}
}
