package agent

import "time"

// Clock is the agent's only source of time for its decisions: lease
// expiry, lost hosts, report age, probe and stall timing. Tests hand in
// one that runs with real time but can jump ahead (the nemesis's clock
// jumps), which a fully fake clock could not do beside real Raft and
// memberlist, whose own timers run on the system clock.
type Clock interface {
	Now() time.Time
	// After is time.After on this clock.
	After(d time.Duration) <-chan time.Time
}

// SystemClock is the real clock.
type SystemClock struct{}

func (SystemClock) Now() time.Time                         { return time.Now() }
func (SystemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }
