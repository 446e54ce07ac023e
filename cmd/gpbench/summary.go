package main

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// trialResult is what one trial measured.
type trialResult struct {
	target string // "content 1", or "dsn"
	t0     time.Time
	// unavailable: from the fault to the acknowledgement of the first
	// insert that started after it; the timeout when writes never came back.
	unavailable time.Duration
	timedOut    bool
	// promoted: from the fault to the first poll at which an instance
	// other than the old primary answered pg_is_in_recovery() = false;
	// negative when never seen.
	promoted time.Duration
	// maxGap: the longest time between two acknowledgements in the trial.
	maxGap     time.Duration
	acked      int
	oldAcks    int // acknowledged after the fault by a session opened before it
	failedOps  int
	lost       int
	splitBrain int
	verifyErr  error
	lastErr    string
	// coord: failover --coordinator's reads through the coordinator.
	coord *coordResult
}

type coordResult struct {
	unavailable time.Duration
	failed      int
	timedOut    bool
}

// line is the per-trial progress line.
func (r trialResult) line(i, n int, fault string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "trial %d/%d: %s %s: ", i, n, r.target, fault)
	if r.timedOut {
		fmt.Fprintf(&b, "writes did not come back within %d ms (timeout)", ms(r.unavailable))
	} else {
		fmt.Fprintf(&b, "unavailable %d ms", ms(r.unavailable))
	}
	if r.verifyErr != nil {
		fmt.Fprintf(&b, ", lost ? (verify: %v)", r.verifyErr)
	} else {
		fmt.Fprintf(&b, ", lost %d", r.lost)
	}
	if r.splitBrain > 0 {
		fmt.Fprintf(&b, ", SPLIT BRAIN at %d polls", r.splitBrain)
	}
	promoted := "not seen"
	if r.promoted >= 0 {
		promoted = fmt.Sprintf("%d ms", ms(r.promoted))
	}
	fmt.Fprintf(&b, " (fault in place at %s; new primary answered after %s; longest write gap %d ms; %d writes acknowledged, %d failed",
		r.t0.UTC().Format("15:04:05.000Z"), promoted, ms(r.maxGap), r.acked, r.failedOps)
	if r.timedOut && r.lastErr != "" {
		fmt.Fprintf(&b, "; last error: %s", r.lastErr)
	}
	if r.oldAcks > 0 {
		fmt.Fprintf(&b, "; %d acknowledged after the fault by the session opened before it", r.oldAcks)
	}
	b.WriteString(")")
	if c := r.coord; c != nil {
		if c.timedOut {
			fmt.Fprintf(&b, "; coordinator: reads did not come back (%d failed)", c.failed)
		} else {
			fmt.Fprintf(&b, "; coordinator: reads failed for %d ms (%d failed)", ms(c.unavailable), c.failed)
		}
	}
	return b.String()
}

// percentiles are the unavailability figures, whole milliseconds.
type percentiles struct {
	P50 int64 `json:"p50"`
	P90 int64 `json:"p90"`
	Max int64 `json:"max"`
}

// summary is the last line of stdout. Field order is the output order.
type summary struct {
	Fault            string      `json:"fault"`
	Trials           int         `json:"trials"`
	UnavailableMS    percentiles `json:"unavailable_ms"`
	LostAckedWrites  int         `json:"lost_acked_writes"`
	SplitBrainEvents int         `json:"split_brain_events"`
	// CoordinatorUnavailableMS: with --coordinator, how long reads
	// through the coordinator failed after the fault.
	CoordinatorUnavailableMS *percentiles `json:"coordinator_unavailable_ms,omitempty"`
	CoordinatorFailedReads   int          `json:"coordinator_failed_reads,omitempty"`
}

func summarize(fault string, results []trialResult) summary {
	values := make([]int64, 0, len(results))
	s := summary{Fault: fault, Trials: len(results)}
	for _, r := range results {
		values = append(values, ms(r.unavailable))
		s.LostAckedWrites += r.lost
		s.SplitBrainEvents += r.splitBrain
	}
	s.UnavailableMS = percentiles{P50: nearestRank(values, 50), P90: nearestRank(values, 90), Max: nearestRank(values, 100)}
	var coord []int64
	for _, r := range results {
		if r.coord != nil {
			coord = append(coord, ms(r.coord.unavailable))
			s.CoordinatorFailedReads += r.coord.failed
		}
	}
	if len(coord) > 0 {
		s.CoordinatorUnavailableMS = &percentiles{P50: nearestRank(coord, 50), P90: nearestRank(coord, 90), Max: nearestRank(coord, 100)}
	}
	return s
}

// nearestRank is the p-th percentile by the nearest-rank method: the
// smallest value such that at least p% of the values are at most it
// (rank ceil(p/100 * n), 1-based). 0 for no values.
func nearestRank(values []int64, p float64) int64 {
	if len(values) == 0 {
		return 0
	}
	s := slices.Clone(values)
	slices.Sort(s)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	rank = min(max(rank, 1), len(s))
	return s[rank-1]
}

// jsonLine is the summary as one line of JSON.
func (s summary) jsonLine() string {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err) // plain ints and strings: cannot fail
	}
	return string(b)
}

// ms rounds to whole milliseconds.
func ms(d time.Duration) int64 { return d.Round(time.Millisecond).Milliseconds() }
