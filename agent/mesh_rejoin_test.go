package agent

import (
	"fmt"
	"testing"
	"time"

	"github.com/gpagent/gpagent/membership"
)

func deadMembers(n int) []membership.Member {
	var out []membership.Member
	for i := range n {
		out = append(out, membership.Member{Name: fmt.Sprintf("sdw%d", i+1), Addr: fmt.Sprintf("10.0.0.%d:7946", i+1), Status: membership.StatusDead})
	}
	return out
}

// A large cluster that lost many hosts for good dials at most one of them
// a round, and each one less and less often: not every dead member every
// round, for ever.
func TestRejoin_OneDeadMemberPerRoundWithBackoff(t *testing.T) {
	var r rejoiner
	dead := deadMembers(50)
	start := time.Unix(1_000_000, 0)
	dials := map[string]int{}
	const rounds = 600 // ten minutes of one-second rounds
	for i := range rounds {
		addr, ok := r.pick(start.Add(time.Duration(i)*time.Second), dead)
		if ok {
			dials[addr]++
		}
	}
	total := 0
	for _, n := range dials {
		total += n
	}
	if total > rounds {
		t.Fatalf("%d dials in %d rounds: more than one a round", total, rounds)
	}
	if len(dials) != len(dead) {
		t.Fatalf("%d of %d dead members dialled in ten minutes: every one must be tried", len(dials), len(dead))
	}
	// With backoff from 3 s doubling to 60 s, ten minutes hold at most
	// about 3+6+12+24+48 s then one a minute: well under 20 attempts.
	for addr, n := range dials {
		if n > 20 {
			t.Errorf("%s dialled %d times in ten minutes: no backoff", addr, n)
		}
	}
}

// After a partition heals, the first dead member is dialled at once; a
// member that comes back and dies again starts from the shortest wait.
func TestRejoin_FirstAttemptAtOnceAndForgetTheLiving(t *testing.T) {
	var r rejoiner
	now := time.Unix(1_000_000, 0)
	one := deadMembers(1)
	if _, ok := r.pick(now, one); !ok {
		t.Fatal("a member newly held dead is not dialled at once")
	}
	if _, ok := r.pick(now.Add(time.Second), one); ok {
		t.Fatal("a dead member dialled again one second later: no backoff")
	}
	for i := range 5 { // several failed attempts: the wait grows
		r.pick(now.Add(time.Duration(i+1)*time.Hour), one)
	}
	r.pick(now.Add(6*time.Hour), nil) // it came back
	if _, ok := r.pick(now.Add(6*time.Hour+time.Second), one); !ok {
		t.Fatal("a member that came back and died again waits out its old backoff")
	}
	if len(r.next) != 1 {
		t.Fatalf("rejoiner tracks %d members, want 1", len(r.next))
	}
}
