//go:build !unix

package consensus

import "errors"

// ErrDataDirInUse is returned by Open when another process holds the raft
// data dir (detected on unix only).
var ErrDataDirInUse = errors.New("raft data dir in use")

// lockDataDir does nothing where flock is not available; bolt's own lock
// on raft.db still keeps a second process out, by waiting.
func lockDataDir(string) (func() error, error) { return func() error { return nil }, nil }
