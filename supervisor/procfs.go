package supervisor

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// pidFile is PostgreSQL's postmaster.pid: line 1 the pid, 2 the data
// directory, 4 the port, 8 the status once the postmaster has one
// ("starting", "ready", "standby", "stopping").
//
// A standalone backend (postgres --single, which pg_rewind runs for crash
// recovery) writes its pid negated. pid is then the positive pid and
// standalone is set: a file left by a standalone backend that is gone is
// as stale as a dead postmaster's, and must not block a start or a full
// recovery.
type pidFile struct {
	pid        int
	standalone bool
	dataDir    string
	port       int
	status     string
}

func readPidFile(dataDir string) (pidFile, error) {
	data, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return pidFile{}, err
	}
	lines := strings.Split(string(data), "\n")
	var pf pidFile
	if pf.pid, err = strconv.Atoi(strings.TrimSpace(lines[0])); err != nil || pf.pid == 0 {
		// Being written right now, or garbage: either way no live pid.
		return pidFile{}, fmt.Errorf("postmaster.pid in %s: bad pid line %q", dataDir, lines[0])
	}
	if pf.pid < 0 {
		pf.pid, pf.standalone = -pf.pid, true
	}
	if len(lines) > 1 {
		pf.dataDir = lines[1]
	}
	if len(lines) > 3 {
		pf.port, _ = strconv.Atoi(strings.TrimSpace(lines[3]))
	}
	if len(lines) > 7 {
		pf.status = strings.TrimSpace(lines[7])
	}
	return pf, nil
}

// findPostmaster reports the pid of a live postmaster serving dataDir,
// from its postmaster.pid, checked against /proc so that a stale file
// whose pid now belongs to another process is not believed. A live
// standalone backend of dataDir counts as running too: nothing may start
// a server on top of it or delete the directory under it.
func findPostmaster(dataDir string) (int, bool, error) {
	pf, err := readPidFile(dataDir)
	if errors.Is(err, os.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	ok, err := isPostmasterOf(pf.pid, dataDir)
	if err != nil || !ok {
		return 0, false, err
	}
	return pf.pid, true, nil
}

// isPostmasterOf reports whether pid is a live (not zombie) postgres
// postmaster whose data directory is dataDir. The postmaster keeps its
// original command line and runs with the data directory as its working
// directory; its children retitle themselves ("postgres: checkpointer"),
// so they do not match.
func isPostmasterOf(pid int, dataDir string) (bool, error) {
	proc := "/proc/" + strconv.Itoa(pid)
	stat, err := os.ReadFile(proc + "/stat")
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	// The state follows the parenthesized command name, which may itself
	// contain spaces and parentheses.
	if i := bytes.LastIndexByte(stat, ')'); i < 0 || i+2 >= len(stat) || stat[i+2] == 'Z' || stat[i+2] == 'X' {
		return false, nil
	}
	cmdline, err := os.ReadFile(proc + "/cmdline")
	if err != nil {
		return false, nil // exited meanwhile
	}
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	if base := filepath.Base(args[0]); base != "postgres" && base != "postmaster" {
		return false, nil
	}
	want, err := filepath.EvalSymlinks(dataDir)
	if err != nil {
		return false, nil
	}
	if cwd, err := os.Readlink(proc + "/cwd"); err == nil {
		return cwd == want, nil
	}
	// Without permission to read its cwd (another user's process, agent
	// not root), fall back to the -D argument.
	for i, a := range args {
		d, ok := "", false
		switch {
		case (a == "-D" || a == "--pgdata") && i+1 < len(args):
			d, ok = args[i+1], true
		case strings.HasPrefix(a, "--pgdata="):
			d, ok = strings.TrimPrefix(a, "--pgdata="), true
		}
		if ok {
			if r, err := filepath.EvalSymlinks(d); err == nil && r == want {
				return true, nil
			}
		}
	}
	return false, nil
}

// tail returns the last n lines of a file, for error messages.
func tail(path string, from int64, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	const limit = 64 << 10
	fi, err := f.Stat()
	if err != nil {
		return ""
	}
	start := max(from, fi.Size()-limit)
	if start >= fi.Size() {
		return ""
	}
	buf := make([]byte, fi.Size()-start)
	if _, err := f.ReadAt(buf, start); err != nil {
		return ""
	}
	return lastLines(string(buf), n)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// newestLog names the most recent server log in dataDir/log, where the
// logging collector writes once the postmaster got that far.
func newestLog(dataDir string) string {
	entries, err := os.ReadDir(filepath.Join(dataDir, "log"))
	if err != nil {
		return ""
	}
	var best string
	var bestT int64
	for _, e := range entries {
		fi, err := e.Info()
		if err == nil && fi.Mode().IsRegular() && fi.ModTime().UnixNano() >= bestT {
			best, bestT = filepath.Join(dataDir, "log", e.Name()), fi.ModTime().UnixNano()
		}
	}
	return best
}
