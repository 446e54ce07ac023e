package supervisor

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// markerFile in a data directory says which cluster and dbid gpagent
// created it for. It is written last, once the instance is complete, so
// its presence means "finished and ours". pg_basebackup copies the
// primary's marker to the mirror; the mirror's own replaces it at the end,
// and until then the copy names another dbid, so a half-built mirror is
// never taken for a finished one.
const markerFile = "gpagent.id"

// intentSuffix names the file, next to a data directory, that records that
// gpagent is creating it. initdb and pg_basebackup insist on an empty
// directory, so this cannot live inside; it lets a retry after a crash
// recognize the half-made directory as its own and clear it, where any
// other non-empty directory is refused.
const intentSuffix = ".gpagent-creating"

type marker struct {
	ClusterID string    `json:"cluster_id"`
	DBID      int       `json:"dbid"`
	Content   int       `json:"content"`
	Created   time.Time `json:"created"`
}

func readMarker(path string) (marker, error) {
	var m marker
	data, err := os.ReadFile(path)
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return m, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

func (s *Supervisor) writeMarker(path, clusterID string, inst Instance) error {
	data, _ := json.Marshal(marker{ClusterID: clusterID, DBID: inst.DBID, Content: inst.Content, Created: time.Now().UTC()})
	return s.writeFileAtomic(path, append(data, '\n'), 0o600)
}

func (m marker) is(clusterID string, dbid int) bool {
	return m.ClusterID == clusterID && m.DBID == dbid
}

// Ours reports whether inst.DataDir holds a complete instance that gpagent
// created for this cluster and dbid.
func (s *Supervisor) Ours(clusterID string, inst Instance) bool {
	m, err := readMarker(filepath.Join(inst.DataDir, markerFile))
	return err == nil && m.is(clusterID, inst.DBID)
}

// dirState is what a data directory path holds, before creation.
type dirState int

const (
	dirAbsent  dirState = iota // nothing there
	dirEmpty                   // an empty directory
	dirOurs                    // a finished instance of this cluster and dbid
	dirPartial                 // an unfinished creation by gpagent for this cluster and dbid
)

// classify looks at inst.DataDir and refuses anything that is neither
// absent, empty nor gpagent's own work for this cluster and dbid.
func (s *Supervisor) classify(clusterID string, inst Instance) (dirState, error) {
	dd := inst.DataDir
	fi, err := os.Stat(dd) // a symlinked datadir is fine
	switch {
	case errors.Is(err, os.ErrNotExist):
		return dirAbsent, nil
	case err != nil:
		return 0, fmt.Errorf("datadir %s: %w", dd, err)
	case !fi.IsDir():
		return 0, fmt.Errorf("datadir %s exists and is not a directory", dd)
	}
	if s.Ours(clusterID, inst) {
		return dirOurs, nil
	}
	empty, err := isEmptyDir(dd)
	if err != nil {
		return 0, fmt.Errorf("datadir %s: %w", dd, err)
	}
	if in, err := readMarker(dd + intentSuffix); err == nil && in.is(clusterID, inst.DBID) {
		if empty {
			return dirEmpty, nil
		}
		return dirPartial, nil
	}
	if empty {
		return dirEmpty, nil
	}
	if m, err := readMarker(filepath.Join(dd, markerFile)); err == nil {
		return 0, fmt.Errorf("datadir %s belongs to gpagent cluster %s dbid %d, not cluster %s dbid %d",
			dd, m.ClusterID, m.DBID, clusterID, inst.DBID)
	}
	return 0, fmt.Errorf("datadir %s exists and is not a gpagent instance", dd)
}

func isEmptyDir(dir string) (bool, error) {
	f, err := os.Open(dir)
	if err != nil {
		return false, err
	}
	defer f.Close()
	_, err = f.Readdirnames(1)
	if errors.Is(err, io.EOF) {
		return true, nil
	}
	return false, err
}

// clearDir removes what is inside dir but keeps dir itself: it may be a
// mount point, or have been made by the operator with care.
func clearDir(dir string) error {
	names, err := readDirNames(dir)
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := os.RemoveAll(filepath.Join(dir, n)); err != nil {
			return err
		}
	}
	return nil
}

func readDirNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}
