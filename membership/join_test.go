package membership

import (
	"errors"
	"strings"
	"testing"
)

func TestJoinError(t *testing.T) {
	t.Parallel()
	const addr = "127.0.0.2:7946"
	wrap := func(cause string) error {
		return errors.New("1 error occurred:\n\t* failed to join " + addr + ": " + cause + "\n\n")
	}
	cases := []struct {
		cause string
		is    error
		want  string
	}{
		{"no installed keys could decrypt the message", ErrKeyMismatch, "join 127.0.0.2:7946: gossip encryption keys differ"},
		{"remote error: encryption is configured but remote state is not encrypted", ErrKeyMismatch, "on at one end only"},
		{"remote state is encrypted and encryption is not configured", ErrKeyMismatch, "on at one end only"},
		{"read tcp 127.0.0.1:1->" + addr + ": i/o timeout", ErrNoReply, "join 127.0.0.2:7946: no reply: gossip encryption keys differ or the peer is down"},
		{"EOF", ErrNoReply, "no reply"},
		{"dial tcp " + addr + ": connect: connection refused", nil, "connection refused: the peer is down"},
		{"something new", nil, "join 127.0.0.2:7946: something new"},
	}
	for _, tc := range cases {
		t.Run(tc.cause, func(t *testing.T) {
			err := joinError(addr, wrap(tc.cause))
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("%v is not %v", err, tc.is)
			}
			if !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("got %q, want one line with %q", err, tc.want)
			}
		})
	}
	t.Run("all addresses refusing our key is final", func(t *testing.T) {
		km := joinError("a:1", wrap("no installed keys could decrypt the message"))
		down := joinError("b:1", wrap("connect: connection refused"))
		if !allKeyMismatch(joinErrors([]error{km, km})) {
			t.Error("two key mismatches not final")
		}
		if allKeyMismatch(joinErrors([]error{km, down})) {
			t.Error("a mismatch and a down peer counted as final: the down one may have the right key")
		}
	})
}
