package supervisor

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// DataFile is one entry of a data directory listing that a mirror's
// agent copies between pg_backup_start and pg_backup_stop: a directory,
// or a file and the size it had when listed.
type DataFile struct {
	Path string `json:"path"` // slash-separated, relative to the data directory
	Size int64  `json:"size,omitempty"`
	Dir  bool   `json:"dir,omitempty"`
}

// ErrNotCopyable says a data directory holds what the file copy does not
// handle (tablespaces, or other symbolic links); pg_basebackup does.
var ErrNotCopyable = errors.New("data directory not copyable file by file")

// Entries left out of a copy, as pg_basebackup leaves them out
// (basebackup.c in PostgreSQL 15), plus gpagent's own files, which
// describe the source instance.
var (
	// Directories copied empty: their contents are rebuilt at start-up
	// or describe the source's running state. pg_wal is streamed by the
	// new standby through its slot; only timeline history files go along.
	skipContents = map[string]bool{
		"pg_stat_tmp": true, "pg_replslot": true, "pg_dynshmem": true,
		"pg_notify": true, "pg_serial": true, "pg_snapshots": true,
		"pg_subtrans": true, "pg_wal": true, "log": true,
	}
	skipFiles = map[string]bool{
		"postgresql.auto.conf.tmp": true, "current_logfiles.tmp": true,
		"backup_label": true, "tablespace_map": true, "backup_manifest": true,
		"postmaster.pid": true, "postmaster.opts": true,
		markerFile: true, startupLogFile: true, standbySignal: true,
	}
)

// DataFiles lists inst's data directory for a copy. It fails with
// ErrNotCopyable where a symbolic link (a tablespace) is found.
func (s *Supervisor) DataFiles(inst Instance) ([]DataFile, error) {
	if err := inst.validate(); err != nil {
		return nil, err
	}
	root := inst.DataDir
	var out []DataFile
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			// Files come and go while the server runs: a relation
			// dropped during the walk is replayed from WAL anyway.
			if errors.Is(err, fs.ErrNotExist) && p != root {
				return nil
			}
			return err
		}
		if p == root {
			return nil
		}
		rel := filepath.ToSlash(p[len(root)+1:])
		name := d.Name()
		parent := path.Dir(rel)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			return fmt.Errorf("%w: %s is a symbolic link", ErrNotCopyable, rel)
		case d.IsDir():
			if rel == "pg_tblspc" {
				if ents, err := os.ReadDir(p); err != nil || len(ents) > 0 {
					return fmt.Errorf("%w: it has tablespaces", ErrNotCopyable)
				}
			}
			if strings.HasPrefix(name, "pgsql_tmp") {
				return fs.SkipDir
			}
			out = append(out, DataFile{Path: rel, Dir: true})
			if skipContents[rel] {
				if rel == "pg_wal" {
					out = append(out, DataFile{Path: "pg_wal/archive_status", Dir: true})
					return s.historyFiles(p, &out)
				}
				return fs.SkipDir
			}
			return nil
		case !d.Type().IsRegular():
			return nil
		case parent == "." && skipFiles[name],
			strings.HasPrefix(name, "pg_internal.init"),
			strings.HasPrefix(name, "pgsql_tmp"):
			return nil
		}
		fi, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		out = append(out, DataFile{Path: rel, Size: fi.Size()})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", root, err)
	}
	return out, nil
}

// historyFiles adds pg_wal's timeline history files to out: a standby
// following the source's timeline needs them before it streams.
func (s *Supervisor) historyFiles(walDir string, out *[]DataFile) error {
	ents, err := os.ReadDir(walDir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".history") || !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue
		}
		*out = append(*out, DataFile{Path: "pg_wal/" + e.Name(), Size: fi.Size()})
	}
	return fs.SkipDir
}

// openDataFile opens a file of the data directory root for reading.
// name is slash-separated and relative; nothing outside the directory can
// be reached, symbolic links included.
// dataFileSize is the size of the regular file name inside root, with
// the checks of openDataFile.
func dataFileSize(root *os.Root, name string) (int64, error) {
	if !filepath.IsLocal(filepath.FromSlash(name)) {
		return 0, fmt.Errorf("%q: not a path inside the data directory", name)
	}
	fi, err := root.Stat(filepath.FromSlash(name))
	if err != nil {
		return 0, err
	}
	if !fi.Mode().IsRegular() {
		return 0, fmt.Errorf("%q: not a regular file", name)
	}
	return fi.Size(), nil
}

func openDataFile(root *os.Root, name string) (*os.File, error) {
	if !filepath.IsLocal(filepath.FromSlash(name)) {
		return nil, fmt.Errorf("%q: not a path inside the data directory", name)
	}
	f, err := root.Open(filepath.FromSlash(name))
	if err != nil {
		return nil, err
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%q: not a regular file", name)
	}
	return f, nil
}
