package agent

import (
	"github.com/gpagent/gpagent/consensus"
	"github.com/gpagent/gpagent/membership"
)

// minVersion is the lowest Version among the members, for the upgrade
// gate (consensus/versions.go): a command type or field is written only
// when every member knows it. Members that left are out; dead and suspect
// ones count, as they may come back on their old version. A member whose
// version does not parse is the lowest (the gate then allows only what
// the baseline introduced).
func minVersion(members []membership.Member, self string, raftServers []string) string {
	// A Raft server that gossip does not know (never seen, or its entry
	// gone) may run any version, the oldest included: it counts as
	// unknown, which lets only the baseline through. It applies every
	// entry the leader writes, gossip or not.
	known := map[string]bool{self: true}
	for _, m := range members {
		if m.Status != membership.StatusLeft {
			known[m.Name] = true
		}
	}
	for _, id := range raftServers {
		if !known[id] {
			return ""
		}
	}
	lowest, seen := Version, false
	for _, m := range members {
		if m.Status == membership.StatusLeft {
			continue
		}
		if !seen || consensus.VersionLess(m.Meta.Version, lowest) {
			lowest, seen = m.Meta.Version, true
		}
	}
	return lowest
}
