package topology

// Phase is what an agent is doing with one of its instances, as it
// reports it (gpagent state -e, the wait lines of init and recoverseg).
// Its words are part of the report's wire format: keep them stable.
type Phase int

const (
	// PhaseUnknown: nothing known yet (the agent has just started).
	PhaseUnknown Phase = iota
	PhaseRunning
	PhaseStopped
	// PhaseFailed: the last step failed; the report's error says which.
	PhaseFailed
	PhaseCreating
	PhaseBuilding
	PhaseWaitingForPrimary
	PhasePromoting
	PhaseRestartingInPlace
	PhaseSwitchoverStopping
	PhaseSwitchoverReadingCheckpoint
	PhaseRejoining
	PhaseRecoveringIncremental
	PhaseRecoveringFull
	PhaseRecoveryWaitingForPrimary
	PhaseFencing
)

var phaseWords = [...]string{
	PhaseUnknown:                     "unknown",
	PhaseRunning:                     "running",
	PhaseStopped:                     "stopped",
	PhaseFailed:                      "failed",
	PhaseCreating:                    "creating",
	PhaseBuilding:                    "building",
	PhaseWaitingForPrimary:           "waiting for primary",
	PhasePromoting:                   "promoting",
	PhaseRestartingInPlace:           "restarting in place",
	PhaseSwitchoverStopping:          "switchover: stopping cleanly",
	PhaseSwitchoverReadingCheckpoint: "switchover: reading checkpoint",
	PhaseRejoining:                   "rejoining as mirror",
	PhaseRecoveringIncremental:       "recovering (incremental)",
	PhaseRecoveringFull:              "recovering (full)",
	PhaseRecoveryWaitingForPrimary:   "recovery waiting for the primary",
	PhaseFencing:                     "fencing",
}

// String returns the phase's word as reports carry it.
func (p Phase) String() string {
	if p < 0 || int(p) >= len(phaseWords) {
		return "unknown"
	}
	return phaseWords[p]
}

// Creating says whether the instance is being made from nothing: until
// that step has finished it is up for no one (its roles and config are
// not complete).
func (p Phase) Creating() bool { return p == PhaseCreating || p == PhaseBuilding }

// recoveringPhase is the phase of a recovery of the given kind. Any kind
// but incremental is a copy, as the executor carries it out.
func recoveringPhase(k RecoveryKind) Phase {
	if k == RecoveryIncremental {
		return PhaseRecoveringIncremental
	}
	return PhaseRecoveringFull
}
