package topology

// StepKind is what an agent does next to one of its local instances.
type StepKind int

const (
	// StepNone: nothing to do (busy, backing off, or in line).
	StepNone StepKind = iota
	// StepInitPrimary: initdb and start a pending primary.
	StepInitPrimary
	// StepCreateMirror: copy Step.Upstream into a pending mirror.
	StepCreateMirror
	// StepPromote: promote a mirror the topology has named primary.
	StepPromote
	// StepRestartInPlace: start a down primary that holds its content's
	// only complete copy (a double fault); Step.StopFirst when it hangs.
	StepRestartInPlace
	// StepSwitchoverStop: shut a switchover's primary down cleanly and
	// read its shutdown checkpoint.
	StepSwitchoverStop
	// StepReadCheckpoint: read the shutdown checkpoint of a switchover's
	// primary already stopped.
	StepReadCheckpoint
	// StepRejoin: start a mirror as a standby of Step.Upstream from the
	// data it has.
	StepRejoin
	// StepRecover: Step.Recovery's rewind or copy from Step.Upstream.
	StepRecover
	// StepFence: kill a demoted primary still running.
	StepFence
	// StepManageSync: keep a running primary's synchronous_standby_names
	// in line with the topology.
	StepManageSync
	// StepWait: nothing can be done until the content's primary is up;
	// Step.Phase says so.
	StepWait
)

var stepWords = [...]string{
	StepNone:           "none",
	StepInitPrimary:    "init primary",
	StepCreateMirror:   "create mirror",
	StepPromote:        "promote",
	StepRestartInPlace: "restart in place",
	StepSwitchoverStop: "switchover stop",
	StepReadCheckpoint: "read checkpoint",
	StepRejoin:         "rejoin",
	StepRecover:        "recover",
	StepFence:          "fence",
	StepManageSync:     "manage sync",
	StepWait:           "wait",
}

func (k StepKind) String() string {
	if k < 0 || int(k) >= len(stepWords) {
		return "unknown step"
	}
	return stepWords[k]
}

// Step is the next thing to do to one local instance.
type Step struct {
	Kind StepKind
	// Phase is reported while the step runs (or, for StepWait, instead).
	Phase Phase
	// Upstream is the content's primary to copy, rewind or rejoin from
	// (StepCreateMirror, StepRejoin, StepRecover).
	Upstream Segment
	// Recovery is the recovery being carried out (StepRecover).
	Recovery Recovery
	// StopFirst: the instance is still running and must be stopped
	// before it is started again (StepRestartInPlace of a hung one).
	StopFirst bool
}

// LocalView is what an agent knows of one local instance besides the
// topology: its process, its last probe and what earlier steps left.
type LocalView struct {
	// Running: a postmaster runs for it.
	Running bool
	// Busy: a step runs for it now.
	Busy bool
	// RetryPending: its last step failed and the back-off has not run out.
	RetryPending bool
	// Hung: probe_retries probes in a row failed while it runs.
	Hung bool
	// HealthKnown: the last probe answered (and nothing has changed the
	// instance since); InRecovery is its pg_is_in_recovery().
	HealthKnown bool
	InRecovery  bool
	// StoppedLSN: the shutdown checkpoint read after a switchover's stop
	// (0 when not read).
	StoppedLSN uint64
	// RecoveryFailedJob: the recovery job whose step failed here (0 when
	// none; jobs number from 1): it is not tried again until the
	// operator asks again.
	RecoveryFailedJob int
	// RecoveredJob: the recovery job whose step finished here (0 when none).
	RecoveredJob int
	// Created: this agent's step that creates it (init primary, create
	// mirror) finished; CreatedFrom is the primary a mirror was built
	// from.
	Created     bool
	CreatedFrom int
	// Fenced: this host's lease ran out and its primaries are fenced.
	Fenced bool
}

// NextStep decides what an agent does next to its local instance s, from
// the committed topology t and what it sees locally. It is a function of
// its inputs only and does not modify t.
//
// The cases are tried in order, the first that holds wins. They uphold:
// an instance is created from nothing only while pending; only an
// instance t names primary is promoted (up, or down and back as a
// standby after it crashed before its promotion, on a host that holds
// its lease); an instance t names
// mirror is never started as a primary (rule 7: a demoted primary
// rejoins only by a rejoin, a rewind or a copy) and is killed while it
// runs as one (fenced); a mirror streams only from the primary t names
// (its Upstream); a recovery runs only while t has it active.
func NextStep(t *Topology, s Segment, v LocalView) Step {
	if v.Busy || v.RetryPending {
		return Step{}
	}
	pending := t.IsPending(s.DBID)
	switch {
	case pending && s.Role == RolePrimary:
		if v.Created && v.Running && !v.Hung {
			// Made here and running: the leader records it up from the
			// next report. Made again (a start of a running server, which
			// ends at once) it would be reported creating again, and on a
			// host whose steps end at once, for ever: a 1,000-host init
			// got no instance up.
			return Step{Kind: StepWait, Phase: PhaseRunning}
		}
		return Step{Kind: StepInitPrimary, Phase: PhaseCreating}
	case pending && s.Role == RoleMirror:
		p, ok := t.Primary(s.Content)
		if !ok || p.Status != StatusUp {
			return Step{Kind: StepWait, Phase: PhaseWaitingForPrimary}
		}
		if v.Created && v.CreatedFrom == p.DBID && v.Running && !v.Hung {
			return Step{Kind: StepWait, Phase: PhaseRunning} // as a primary's, above
		}
		return Step{Kind: StepCreateMirror, Phase: PhaseBuilding, Upstream: p}
	case s.Role == RolePrimary && s.Status == StatusUp && v.Running && v.HealthKnown && v.InRecovery:
		// The leader promoted this mirror.
		return Step{Kind: StepPromote, Phase: PhasePromoting}
	case s.Role == RolePrimary && s.Status == StatusDown && !pending && v.Running && v.HealthKnown && v.InRecovery && !v.Fenced:
		// A mirror the topology promoted that crashed before pg_promote,
		// then recorded down and restarted in place: it runs as a standby.
		// It was in sync when promoted (rule 2) and took no write since,
		// and the old primary is demoted: promote it, or the content stays
		// with no primary (rule 8). Not on a fenced host, whose view may be
		// stale. The leader records it up once it answers as a primary.
		return Step{Kind: StepPromote, Phase: PhasePromoting}
	case s.Role == RolePrimary && s.Status == StatusDown && !pending && (!v.Running || v.Hung):
		// Double fault: this primary holds the only complete copy of its
		// content, so it comes back in place; a hung one is stopped first.
		return Step{Kind: StepRestartInPlace, Phase: PhaseRestartingInPlace, StopFirst: v.Running}
	case IsSwitchoverSource(t, s) && v.Running:
		// A planned switchover: a clean shutdown sends every WAL record,
		// the shutdown checkpoint last, to the connected mirror.
		return Step{Kind: StepSwitchoverStop, Phase: PhaseSwitchoverStopping}
	case IsSwitchoverSource(t, s) && !v.Running && v.StoppedLSN == 0:
		return Step{Kind: StepReadCheckpoint, Phase: PhaseSwitchoverReadingCheckpoint}
	case s.Role == RoleMirror && t.IsRejoining(s.DBID) && !v.Running:
		p, ok := t.Primary(s.Content)
		if !ok {
			return Step{}
		}
		return Step{Kind: StepRejoin, Phase: PhaseRejoining, Upstream: p}
	case s.Role == RoleMirror && s.Status == StatusDown && !pending && v.Running && ((v.HealthKnown && !v.InRecovery) || v.Hung):
		// A demoted primary that answers as a primary, or hangs (and may
		// thaw): killed before anything else, a recovery or a rejoin
		// included. A recovery's first step waits for the new primary to
		// take writes, and meanwhile this one would take them too (a
		// client with synchronous_commit = local needs no standby);
		// pg_rewind runs the crash recovery a kill leaves.
		return Step{Kind: StepFence, Phase: PhaseFencing}
	case recoveryDue(t, s, v) && (!v.Running || (v.HealthKnown && (!v.InRecovery || !recoveryDone(t, s, v)))):
		// Not again once this job's step has run and the instance runs
		// as a standby: the leader records it up when it streams. A
		// standby that kept running through a cut is stepped too: its
		// replication connection may have died with the cut.
		rec, _ := t.Recovering(s.DBID)
		p, ok := t.Primary(s.Content)
		if !ok || p.Status != StatusUp {
			return Step{Kind: StepWait, Phase: PhaseRecoveryWaitingForPrimary}
		}
		return Step{Kind: StepRecover, Phase: recoveringPhase(rec.Kind), Upstream: p, Recovery: rec}
	case s.Role == RoleMirror && s.Status == StatusDown && !pending && !t.IsRejoining(s.DBID) && !recovering(t, s.DBID) && v.Running && (!v.HealthKnown || !v.InRecovery):
		// A demoted primary still running (hung, or cut off): kill it.
		// Its mirror was promoted; it must take no more connections.
		return Step{Kind: StepFence, Phase: PhaseFencing}
	case s.Role == RolePrimary && s.Status == StatusUp && v.Running && !v.Fenced:
		return Step{Kind: StepManageSync}
	}
	return Step{}
}

// IsSwitchoverSource reports whether s is the primary a switchover in
// progress stops: its stop is on purpose, not a crash.
func IsSwitchoverSource(t *Topology, s Segment) bool {
	sw, ok := t.SwitchoverOf(s.Content)
	return ok && sw.From == s.DBID && s.Role == RolePrimary && s.Status == StatusUp
}

func recovering(t *Topology, dbid int) bool {
	_, ok := t.Recovering(dbid)
	return ok
}

// recoveryDue: s's recovery is active and its step has not already
// failed here in this job.
func recoveryDue(t *Topology, s Segment, v LocalView) bool {
	rec, ok := t.Recovering(s.DBID)
	if !ok || !rec.Active || s.Role != RoleMirror || s.Status != StatusDown {
		return false
	}
	return v.RecoveryFailedJob != rec.Job
}

// recoveryDone: s's recovery step of its current job has run here.
func recoveryDone(t *Topology, s Segment, v LocalView) bool {
	rec, ok := t.Recovering(s.DBID)
	return ok && v.RecoveredJob == rec.Job
}
