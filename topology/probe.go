package topology

// ProbeFailures counts an instance's probes failed in a row. The zero
// value is a run of none. Its methods return the next count.
type ProbeFailures struct{ n int }

// Failed is the count after one more failed probe.
func (p ProbeFailures) Failed() ProbeFailures { return ProbeFailures{n: p.n + 1} }

// Answered is the count after a probe that answered (or after a step of
// the agent's own, which makes earlier failures moot): none.
func (ProbeFailures) Answered() ProbeFailures { return ProbeFailures{} }

// Count is the number of probes failed in a row.
func (p ProbeFailures) Count() int { return p.n }

// Hung reports whether retries probes in a row have failed: a running
// postmaster that does not answer (hung, or frozen) counts as failed.
func (p ProbeFailures) Hung(retries int) bool { return p.n >= retries }

// Retrying reports whether the last probe failed but not yet retries in
// a row: the agent probes again at once rather than after an interval,
// so a hung instance is declared failed after retries timeouts.
func (p ProbeFailures) Retrying(retries int) bool { return p.n > 0 && p.n < retries }

// ProbeResult is what one probe round saw of a local instance, and what
// the agent was doing with it.
type ProbeResult struct {
	// Running: a postmaster runs (the supervisor knows its pid).
	Running bool
	// Answered: the probe query succeeded.
	Answered bool
	// Failures: probes failed in a row, this one included.
	Failures ProbeFailures
	// Retries is probe_retries.
	Retries int
	// Busy: a step of the agent's own (create, start, stop, recover) runs
	// on the instance; it may be down or silent on purpose meanwhile.
	Busy bool
	// SwitchoverSource: the instance is the primary a switchover is
	// stopping cleanly.
	SwitchoverSource bool
	// StepFailed: the agent's last step on the instance failed.
	StepFailed bool
}

// Failed says whether the agent vouches the instance is down
// (Observation.Failed), which lets the leader fail over a primary or mark
// a mirror down. A postmaster that is not running is down unless a step
// of the agent's own is starting or stopping it; one that runs is down
// once it has failed Retries probes in a row. A switchover's source is
// stopped on purpose: it is failed only when its clean stop failed
// (while stopped), never while the stop is under way.
func (r ProbeResult) Failed() bool {
	switch {
	case !r.Running && r.SwitchoverSource:
		return !r.Busy && r.StepFailed
	case !r.Running:
		return !r.Busy
	case r.Answered:
		return false
	case r.Busy && r.SwitchoverSource:
		return false
	default:
		return r.Failures.Hung(r.Retries)
	}
}
