package topology

import "testing"

func fails(n int) ProbeFailures {
	var p ProbeFailures
	for range n {
		p = p.Failed()
	}
	return p
}

func TestProbeFailures_Counting(t *testing.T) {
	const retries = 3
	for _, tc := range []struct {
		name           string
		p              ProbeFailures
		hung, retrying bool
		wantCount      int
	}{
		{"none", ProbeFailures{}, false, false, 0},
		{"one failed: retry at once", fails(1), false, true, 1},
		{"retries-1 failed", fails(2), false, true, 2},
		{"retries failed: hung", fails(3), true, false, 3},
		{"more than retries", fails(5), true, false, 5},
		{"answered after failures", fails(5).Answered(), false, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.p.Count(); got != tc.wantCount {
				t.Errorf("Count() = %d, want %d", got, tc.wantCount)
			}
			if got := tc.p.Hung(retries); got != tc.hung {
				t.Errorf("Hung(%d) = %v, want %v", retries, got, tc.hung)
			}
			if got := tc.p.Retrying(retries); got != tc.retrying {
				t.Errorf("Retrying(%d) = %v, want %v", retries, got, tc.retrying)
			}
		})
	}
	t.Run("stepping leaves the count it stepped from", func(t *testing.T) {
		p := fails(2)
		_, _ = p.Failed(), p.Answered()
		if p.Count() != 2 {
			t.Fatalf("count changed to %d", p.Count())
		}
	})
}

func TestProbeResult_Failed(t *testing.T) {
	const retries = 3
	for _, tc := range []struct {
		name string
		r    ProbeResult
		want bool
	}{
		{"not running, nothing of ours starting it", ProbeResult{}, true},
		{"not running while our step starts it", ProbeResult{Busy: true}, false},
		{"not running after our step failed", ProbeResult{StepFailed: true}, true},
		{"running and answered", ProbeResult{Running: true, Answered: true}, false},
		{"running, answered after failures", ProbeResult{Running: true, Answered: true, Failures: fails(0)}, false},
		{"running, one probe failed", ProbeResult{Running: true, Failures: fails(1)}, false},
		{"running, retries-1 probes failed", ProbeResult{Running: true, Failures: fails(retries - 1)}, false},
		{"running, retries probes failed: hung", ProbeResult{Running: true, Failures: fails(retries)}, true},
		{"hung while our step runs on it: still failed", ProbeResult{Running: true, Busy: true, Failures: fails(retries)}, true},
		{"switchover source stopping: probes fail on purpose", ProbeResult{Running: true, Busy: true, SwitchoverSource: true, Failures: fails(retries + 2)}, false},
		{"switchover source hung with no stop under way", ProbeResult{Running: true, SwitchoverSource: true, Failures: fails(retries)}, true},
		{"switchover source stopped cleanly", ProbeResult{SwitchoverSource: true}, false},
		{"switchover source still stopping", ProbeResult{SwitchoverSource: true, Busy: true}, false},
		{"switchover source whose clean stop failed", ProbeResult{SwitchoverSource: true, StepFailed: true}, true},
		{"switchover source, failed stop being retried", ProbeResult{SwitchoverSource: true, StepFailed: true, Busy: true}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.r.Retries = retries
			if got := tc.r.Failed(); got != tc.want {
				t.Fatalf("Failed() = %v, want %v", got, tc.want)
			}
		})
	}
}
