package membership

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

var (
	// ErrKeyMismatch means a peer answered a join but one side could not
	// decrypt the other: the nodes have different gossip keys, or only one
	// of them encrypts. Retrying does not help.
	ErrKeyMismatch = errors.New("gossip encryption keys differ")
	// ErrNoReply means a peer accepted the connection but closed it or let
	// it time out without an answer: it is hung or overloaded, or it is not
	// a gossip port, or it uses another gossip label. memberlist v0.7
	// answers a key mismatch (reported as ErrKeyMismatch), but other
	// versions and proxies may not, so the message still names the keys.
	ErrNoReply = errors.New("no reply")
)

// Join contacts the given gossip addresses (host:port) until at least one
// accepts this node, retrying with backoff (capped at DefaultJoinBackoffMax),
// and returns how many accepted. It gives up when ctx ends, and at once
// when every address refused our gossip key (errors.Is(err,
// ErrKeyMismatch)). An attempt that ctx cut short may still complete in the
// background (memberlist's join takes no context), joining the cluster
// after Join returned an error.
func (m *Membership) Join(ctx context.Context, addrs []string) (int, error) {
	if len(addrs) == 0 {
		return 0, errors.New("membership: join: no addresses")
	}
	backoff := joinBackoffMin
	var lastErr error // the last attempt that got an answer says the most
	for attempt := 1; ; attempt++ {
		if m.down.Load() {
			return 0, ErrShutdown
		}
		n, err := m.joinOnce(ctx, addrs)
		if n > 0 {
			m.log.Info("joined the cluster", "contacted", n, "addrs", addrs, "attempts", attempt)
			return n, nil
		}
		if allKeyMismatch(err) {
			return 0, fmt.Errorf("membership: %w", err)
		}
		if err != nil {
			lastErr = err
			m.log.Debug("join attempt failed", "attempt", attempt, "retry_in", backoff, "error", err)
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			if lastErr == nil {
				lastErr = fmt.Errorf("join %s: no reply yet (the peer is slow or hung, or that is not a gossip port)", strings.Join(addrs, ", "))
			}
			return 0, fmt.Errorf("membership: gave up joining after %s: %w (%w)", plural(attempt, "attempt"), lastErr, ctx.Err())
		case <-t.C:
		}
		backoff = min(2*backoff, DefaultJoinBackoffMax)
	}
}

// joinOnce tries every address in parallel (memberlist's own Join tries
// them one after the other, each up to twice DefaultTCPTimeout) and returns
// when all have answered or ctx ends. Cut short with no answer, it returns
// no error: it has learnt nothing.
func (m *Membership) joinOnce(ctx context.Context, addrs []string) (int, error) {
	type result struct {
		n   int
		err error
	}
	results := make(chan result, len(addrs)) // buffered: abandoned attempts must not leak
	for _, addr := range addrs {
		go func() {
			n, err := m.ml.Join([]string{addr})
			switch {
			case n == 0 && err != nil:
				err = joinError(addr, err)
			case n == 0:
				err = fmt.Errorf("join %s: the address resolved to nothing", addr)
			}
			results <- result{n, err}
		}()
	}
	var joined int
	var errs []error
	for range addrs {
		select {
		case r := <-results:
			joined += r.n
			if r.err != nil && r.n == 0 {
				errs = append(errs, r.err)
			}
		case <-ctx.Done():
			if joined > 0 {
				return joined, nil
			}
			return 0, joinErrors(errs)
		}
	}
	if joined > 0 {
		return joined, nil
	}
	return 0, joinErrors(errs)
}

// joinError turns memberlist's join error into a one-line error that says
// what the operator should check. memberlist formats its errors with %v
// into a multierror, so its text is all there is to go on; matching it here,
// at the edge of the dependency, keeps string matching out of the callers,
// who get ErrKeyMismatch and ErrNoReply.
func joinError(addr string, err error) error {
	msg := oneLine(err.Error())
	switch {
	case strings.Contains(msg, "no installed keys could decrypt"):
		return fmt.Errorf("join %s: %w (the peer's answer does not decrypt with our keys)", addr, ErrKeyMismatch)
	case strings.Contains(msg, "encryption is configured but remote state is not encrypted"),
		strings.Contains(msg, "remote state is encrypted and encryption is not configured"):
		return fmt.Errorf("join %s: %w (gossip encryption is on at one end only)", addr, ErrKeyMismatch)
	case strings.Contains(msg, "connection refused"):
		return fmt.Errorf("join %s: connection refused: the peer is down or not listening there", addr)
	case strings.Contains(msg, "EOF"), strings.Contains(msg, "i/o timeout"), strings.Contains(msg, "connection reset"):
		return fmt.Errorf("join %s: %w: gossip encryption keys differ or the peer is down", addr, ErrNoReply)
	default:
		return fmt.Errorf("join %s: %s", addr, msg)
	}
}

// oneLine flattens memberlist's multierror ("1 error occurred:\n\t* failed
// to join a: b\n\n") to its messages, without the "failed to join a: "
// that joinError says better.
func oneLine(s string) string {
	var parts []string
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "* "))
		if line == "" || strings.HasSuffix(line, "error occurred:") || strings.HasSuffix(line, "errors occurred:") {
			continue
		}
		if rest, ok := strings.CutPrefix(line, "failed to join "); ok {
			if _, cause, ok := strings.Cut(rest, ": "); ok {
				line = cause
			}
		}
		parts = append(parts, line)
	}
	return strings.Join(parts, "; ")
}

// multiJoinError is the errors of one attempt, on one line, each one
// reachable by errors.Is.
type multiJoinError []error

func (e multiJoinError) Error() string {
	s := make([]string, len(e))
	for i, err := range e {
		s[i] = err.Error()
	}
	return strings.Join(s, "; ")
}

func (e multiJoinError) Unwrap() []error { return e }

func joinErrors(errs []error) error {
	switch len(errs) {
	case 0:
		return nil
	case 1:
		return errs[0]
	}
	return multiJoinError(errs)
}

// allKeyMismatch says whether every address of an attempt refused our key.
func allKeyMismatch(err error) bool {
	var multi multiJoinError
	if !errors.As(err, &multi) {
		return errors.Is(err, ErrKeyMismatch)
	}
	if len(multi) == 0 {
		return false
	}
	for _, e := range multi {
		if !errors.Is(e, ErrKeyMismatch) {
			return false
		}
	}
	return true
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}
