//go:build unix

package consensus

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// ErrDataDirInUse is returned by Open when another process (or another
// Node in this one) holds the raft data dir.
var ErrDataDirInUse = errors.New("raft data dir in use")

// lockDataDir takes an exclusive lock on dir/lock without waiting. bolt
// takes its own lock on raft.db, but waits for it for ever: a second agent
// started on the same data dir would hang instead of saying why. Closing
// the returned file releases the lock, as does the process's exit.
func lockDataDir(dir string) (unlock func() error, err error) {
	path := filepath.Join(dir, "lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock data dir: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s is locked by another process", ErrDataDirInUse, path)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return f.Close, nil
}
