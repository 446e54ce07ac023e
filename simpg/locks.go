package simpg

import (
	"slices"
	"strings"
)

// Locking. Each instance has its own lock, which guards its fields; an
// operation holds the locks of every instance it reads or changes, taken
// together by a lockSet in key order (so two operations never deadlock).
// The World's own lock guards only what is shared by all instances (the
// host drivers, injected failures, acknowledgements), is taken after
// instance locks and held only briefly. A thousand simulated hosts in one
// process queued on a single world lock: 3,000 goroutines waited on it
// through an init, and a host's round took seconds.
//
// Which instances an operation on in touches is its neighbourhood: in,
// its upstreams (configured and connected), their standbys (a sync
// standby's choice reads them all) and its own standbys. An instance's
// upstream and standby links change only under its own lock, so once the
// neighbourhood is locked it stays what was computed.

// lockSet holds the locks of the neighbourhoods of its centers.
type lockSet struct {
	w       *World
	centers []*instance
	held    []*instance // locked, in key order
}

// lock returns the locks of the centers' neighbourhoods, held.
func (w *World) lock(centers ...*instance) *lockSet {
	ls := &lockSet{w: w, centers: centers}
	ls.relock()
	return ls
}

// lockOne locks in alone, for an operation that reads and changes only
// in's own fields.
func (w *World) lockOne(in *instance) *lockSet {
	in.mu.Lock()
	return &lockSet{w: w, held: []*instance{in}}
}

// unlock releases every lock of the set; relock takes them again.
func (ls *lockSet) unlock() {
	for _, in := range ls.held {
		in.mu.Unlock()
	}
}

// relock takes the locks again, the neighbourhoods computed afresh (they
// may have changed while the set was unlocked).
func (ls *lockSet) relock() {
	if ls.centers == nil { // lockOne's
		ls.held[0].mu.Lock()
		return
	}
	want := slices.Clone(ls.centers)
	for {
		slices.SortFunc(want, func(a, b *instance) int { return strings.Compare(a.key, b.key) })
		want = slices.Compact(want)
		for _, in := range want {
			in.mu.Lock()
		}
		more := ls.w.neighbourhood(ls.centers, want)
		if len(more) == 0 {
			ls.held = want
			return
		}
		for _, in := range want {
			in.mu.Unlock()
		}
		want = append(want, more...)
	}
}

// neighbourhood returns the instances of the centers' neighbourhoods not
// in held, reading only the fields of instances in held (all centers are).
func (w *World) neighbourhood(centers, held []*instance) []*instance {
	var more []*instance
	need := func(in *instance) bool {
		if in == nil || slices.Contains(held, in) {
			return in != nil
		}
		if !slices.Contains(more, in) {
			more = append(more, in)
		}
		return false
	}
	for _, c := range centers {
		for _, d := range c.downstream {
			need(d)
		}
		for _, k := range [2]string{c.upKey, c.connected} {
			if k == "" {
				continue
			}
			if up := w.lookup(k); need(up) {
				for _, d := range up.downstream {
					need(d)
				}
			}
		}
	}
	return more
}
