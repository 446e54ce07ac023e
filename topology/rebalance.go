package topology

import "fmt"

// CanSwitchover says why content's roles cannot be swapped now, or nil.
// Only a pair recorded up and in sync may swap: the mirror then has every
// acknowledged commit (rule 4), and replays the rest up to the primary's
// shutdown checkpoint.
func CanSwitchover(t *Topology, content int) error {
	p, okP := t.Primary(content)
	m, okM := t.Mirror(content)
	switch {
	case !okP:
		return fmt.Errorf("%w: switchover: content %d has no primary", ErrInvalid, content)
	case !okM:
		return fmt.Errorf("%w: switchover: content %d has no mirror", ErrInvalid, content)
	case p.Status != StatusUp || m.Status != StatusUp || p.Mode != ModeSynced || m.Mode != ModeSynced:
		return fmt.Errorf("%w: switchover: content %d is not an in-sync pair (primary dbid %d %s/%s, mirror dbid %d %s/%s)",
			ErrInvalid, content, p.DBID, p.Status, p.Mode, m.DBID, m.Status, m.Mode)
	}
	if _, busy := t.SwitchoverOf(content); busy {
		return fmt.Errorf("%w: switchover: content %d already has one in progress", ErrInvalid, content)
	}
	return nil
}

// RebalanceAction is what a rebalance (gprecoverseg -r) does with one
// content whose instances are not in their preferred roles.
type RebalanceAction int

const (
	// RebalanceSwitch: start a switchover of the content.
	RebalanceSwitch RebalanceAction = iota + 1
	// RebalanceRunning: a switchover of it is already in progress.
	RebalanceRunning
	// RebalanceRefused: left alone; the item's Reason says why.
	RebalanceRefused
)

// RebalanceItem is the rebalance decision for one content.
type RebalanceItem struct {
	Content int
	Action  RebalanceAction
	Reason  string
}

// PlanRebalance decides, for every content out of its preferred roles,
// whether a rebalance switches it over. lags holds each mirror's replay
// lag in bytes by mirror dbid, as its primary last reported it (absent:
// not streaming); a pair whose lag is unknown or over maxLag is refused,
// as is one that cannot swap losslessly (CanSwitchover). Contents in
// their preferred roles, or without a pair, are not listed.
func PlanRebalance(t *Topology, lags map[int]int64, maxLag int64) []RebalanceItem {
	var out []RebalanceItem
	for _, c := range t.Contents() {
		if it, ok := RebalanceContent(t, c, lags, maxLag); ok {
			out = append(out, it)
		}
	}
	return out
}

// RebalanceContent is PlanRebalance for one content; ok is false when
// the content is not to be rebalanced (in its preferred roles, or not a
// pair).
func RebalanceContent(t *Topology, content int, lags map[int]int64, maxLag int64) (RebalanceItem, bool) {
	p, okP := t.Primary(content)
	m, okM := t.Mirror(content)
	if !okP || !okM || p.PreferredRole == RolePrimary {
		return RebalanceItem{}, false
	}
	it := RebalanceItem{Content: content}
	if _, busy := t.SwitchoverOf(content); busy {
		it.Action = RebalanceRunning
		return it, true
	}
	if lag, known := lags[m.DBID]; !known || lag > maxLag {
		it.Action = RebalanceRefused
		it.Reason = fmt.Sprintf("mirror dbid %d replay lag %s over the limit of %d bytes", m.DBID, lagWords(lag, known), maxLag)
		return it, true
	}
	if err := CanSwitchover(t, content); err != nil {
		it.Action, it.Reason = RebalanceRefused, err.Error()
		return it, true
	}
	it.Action = RebalanceSwitch
	return it, true
}

func lagWords(lag int64, known bool) string {
	if !known {
		return "unknown (not streaming)"
	}
	return fmt.Sprint(lag)
}
