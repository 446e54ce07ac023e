package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// prepareDataDir readies inst.DataDir for initdb or pg_basebackup: an
// empty directory, mode 0700, owned by the OS user. A partial earlier
// attempt (state dirPartial) is cleared first. The intent file is written
// before anything goes into the directory, so a crash from here on leaves
// something a retry recognizes as its own.
//
// The returned undo puts things back after a failure: it stops a server
// the attempt started, empties the directory (and removes it if this
// attempt made it) and drops the intent. It must be called with the
// instance lock held.
func (s *Supervisor) prepareDataDir(ctx context.Context, clusterID string, inst Instance, state dirState) (undo func(), err error) {
	dd := inst.DataDir
	if state == dirPartial {
		s.log.Warn("clearing an unfinished earlier creation", "dbid", inst.DBID, "datadir", dd)
		if err := s.stopLocked(ctx, inst); err != nil {
			return nil, err
		}
		if err := clearDir(dd); err != nil {
			return nil, fmt.Errorf("clear unfinished datadir %s: %w", dd, err)
		}
	}
	if err := s.user.makeParents(dd); err != nil {
		return nil, err
	}
	intent := dd + intentSuffix
	if err := s.writeMarker(intent, clusterID, inst); err != nil {
		// Only possible for a non-root agent whose datadir the operator
		// made in a directory it may not write: creation still works, but
		// a crash midway would need the operator to empty the directory.
		s.log.Warn("cannot record creation intent; a crash midway will need manual cleanup", "path", intent, "err", err)
		intent = ""
	}
	made := false
	err = os.Mkdir(dd, 0o700)
	if err == nil {
		made = true
	} else if errors.Is(err, os.ErrExist) {
		err = nil
	}
	// PostgreSQL wants 0700 (or 0750) and its own user as the owner.
	if err == nil {
		err = os.Chmod(dd, 0o700)
	}
	if err == nil {
		err = s.user.chown(dd)
	}
	if err != nil {
		if intent != "" {
			os.Remove(intent) // nothing was put in the directory yet
		}
		return nil, fmt.Errorf("create datadir: %w", err)
	}
	undo = func() {
		// The caller's ctx may be what failed; cleanup gets its own time.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := s.stopLocked(cctx, inst); err != nil {
			s.log.Error("cleanup: cannot stop the half-made instance; leaving it for a retry", "dbid", inst.DBID, "err", err)
			return
		}
		var err error
		if made {
			err = os.RemoveAll(dd)
		} else {
			err = clearDir(dd)
		}
		if err != nil {
			s.log.Error("cleanup: cannot clear datadir; a retry will", "datadir", dd, "err", err)
			return
		}
		if intent != "" {
			os.Remove(intent)
		}
	}
	return undo, nil
}

// finishCreate marks the instance complete: the marker goes in (durably)
// before the intent goes away, so there is no moment at which a crash
// would leave a finished directory that looks foreign.
func (s *Supervisor) finishCreate(clusterID string, inst Instance) error {
	if err := s.writeMarker(filepath.Join(inst.DataDir, markerFile), clusterID, inst); err != nil {
		return fmt.Errorf("write marker: %w", err)
	}
	if err := os.Remove(inst.DataDir + intentSuffix); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// writeOwnedFile writes a small file owned by the OS user (not atomically:
// for files of a directory nothing reads yet).
func (s *Supervisor) writeOwnedFile(path string, data []byte, perm os.FileMode) error {
	if err := os.WriteFile(path, data, perm); err != nil {
		return err
	}
	if err := os.Chmod(path, perm); err != nil {
		return err
	}
	return s.user.chown(path)
}

// Destroy stops inst and deletes the contents of its data directory, for a
// full recovery that rebuilds it. It refuses a directory that is not
// gpagent's for this cluster and dbid (finished, or an unfinished
// creation): nothing else is ever deleted. The directory itself stays, as
// it may be a mount point.
func (s *Supervisor) Destroy(ctx context.Context, clusterID string, inst Instance) error {
	unlock, err := s.lockInstance(ctx, inst)
	if err != nil {
		return err
	}
	defer unlock()
	state, err := s.classify(clusterID, inst)
	if err != nil {
		return fmt.Errorf("destroy: %w", err)
	}
	if state == dirAbsent || state == dirEmpty {
		return nil
	}
	if err := s.stopLocked(ctx, inst); err != nil {
		return fmt.Errorf("destroy %s: %w", inst, err)
	}
	// The intent file goes in before the marker goes out, so that at no
	// moment of an interrupted removal the remains look foreign (a retry
	// clears them) or finished.
	if err := s.writeMarker(inst.DataDir+intentSuffix, clusterID, inst); err != nil {
		s.log.Warn("cannot record intent before clearing; a crash midway will need manual cleanup", "err", err)
	}
	if err := os.Remove(filepath.Join(inst.DataDir, markerFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("destroy %s: %w", inst, err)
	}
	if err := s.discardContents(inst.DataDir); err != nil {
		return fmt.Errorf("destroy %s: %w", inst, err)
	}
	os.Remove(inst.DataDir + intentSuffix)
	s.log.Warn("instance destroyed", "dbid", inst.DBID, "datadir", inst.DataDir)
	return nil
}

// trashSuffix names the folder beside a data directory that its old
// contents are moved to by Destroy and deleted from in the background.
const trashSuffix = ".gpagent-trash"

// discardContents empties dir at once: its entries are renamed into a
// folder of dir+trashSuffix and deleted from there in the background, so
// a full recovery does not wait for the deletion of a large directory
// (about 0.2 s per GB here). Where the trash folder is on another file
// system (dir is a mount point), they are deleted in place. Remains of a
// deletion cut short by an agent exit are deleted with the next one.
func (s *Supervisor) discardContents(dir string) error {
	trash := dir + trashSuffix
	if err := os.MkdirAll(trash, 0o700); err != nil {
		s.log.Warn("cannot make a trash folder; deleting in place", "path", trash, "err", err)
		return clearDir(dir)
	}
	names, err := readDirNames(dir)
	if err != nil {
		return err
	}
	bin, err := os.MkdirTemp(trash, "")
	if err != nil {
		return clearDir(dir)
	}
	for _, n := range names {
		if err := os.Rename(filepath.Join(dir, n), filepath.Join(bin, n)); err != nil {
			if !errors.Is(err, syscall.EXDEV) {
				s.log.Warn("cannot move to the trash folder; deleting in place", "path", filepath.Join(dir, n), "err", err)
			}
			if err := clearDir(dir); err != nil {
				return err
			}
			break
		}
	}
	go func() {
		if err := os.RemoveAll(trash); err != nil {
			s.log.Warn("cannot delete old instance files", "path", trash, "err", err)
		}
	}()
	return nil
}
