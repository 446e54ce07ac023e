package agent

import (
	"fmt"
	"testing"

	"github.com/gpagent/gpagent/api"
	"github.com/gpagent/gpagent/consensus"
	"github.com/gpagent/gpagent/membership"
)

func TestMinVersion(t *testing.T) {
	mem := func(ver string, st membership.Status) membership.Member {
		return membership.Member{Meta: membership.Meta{Version: ver}, Status: st}
	}
	named := func(name, ver string) membership.Member {
		return membership.Member{Name: name, Meta: membership.Meta{Version: ver}, Status: membership.StatusAlive}
	}
	cases := []struct {
		name    string
		members []membership.Member
		raft    []string
		want    string
	}{
		{"none: this agent's", nil, nil, Version},
		{"all alike", []membership.Member{mem("0.1.0", membership.StatusAlive), mem("0.1.0", membership.StatusAlive)}, nil, "0.1.0"},
		{"an older one", []membership.Member{mem("0.3.0", membership.StatusAlive), mem("0.2.5", membership.StatusAlive)}, nil, "0.2.5"},
		{"a dead older one counts", []membership.Member{mem("0.3.0", membership.StatusAlive), mem("0.2.0", membership.StatusDead)}, nil, "0.2.0"},
		{"one that left does not", []membership.Member{mem("0.3.0", membership.StatusAlive), mem("0.2.0", membership.StatusLeft)}, nil, "0.3.0"},
		{"an unknown version is lowest", []membership.Member{mem("0.3.0", membership.StatusAlive), mem("", membership.StatusSuspect)}, nil, ""},
		{"raft servers all in gossip", []membership.Member{named("b", "0.3.0"), named("c", "0.2.5")}, []string{"self", "b", "c"}, "0.2.5"},
		{"a raft server missing from gossip is unknown", []membership.Member{named("b", "0.3.0")}, []string{"self", "b", "c"}, ""},
		{"a raft server that left gossip is unknown", []membership.Member{named("b", "0.3.0"), {Name: "c", Meta: membership.Meta{Version: "0.3.0"}, Status: membership.StatusLeft}}, []string{"self", "b", "c"}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := minVersion(tc.members, "self", tc.raft); got != tc.want {
				t.Fatalf("minVersion = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestToAPIError_NeedsNewerCluster: a command refused by the upgrade gate
// is a conflict with the cluster's state (upgrade every agent first), not
// an internal error.
func TestToAPIError_NeedsNewerCluster(t *testing.T) {
	err := fmt.Errorf("apply switchover: %w", consensus.ErrNeedsNewerCluster)
	if got := toAPIError(err).Code; got != api.CodeConflict {
		t.Fatalf("code %q, want %q", got, api.CodeConflict)
	}
}
