package supervisor

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// osUser is the unprivileged account PostgreSQL runs as. PostgreSQL refuses
// to run as root, so when the agent is root every binary is started with
// this user's credentials and every file the server touches is chowned to
// it; when the agent is not root, the user is the agent's own.
type osUser struct {
	name   string
	uid    int
	gid    int
	groups []uint32 // supplementary groups, for permission checks and setgroups
	home   string
	drop   bool // the agent is root: drop to uid/gid for every child
}

// resolveUser finds the OS user; see Config.OSUser.
func resolveUser(name string) (osUser, error) {
	root := os.Geteuid() == 0
	if name == "" {
		if root {
			name = "postgres"
		} else {
			cur, err := user.Current()
			if err != nil {
				return osUser{}, fmt.Errorf("cannot determine the current OS user: %w; set os_user", err)
			}
			name = cur.Username
		}
	}
	u, err := user.Lookup(name)
	if err != nil {
		if root {
			return osUser{}, fmt.Errorf("running as root: OS user %q not found; set os_user", name)
		}
		return osUser{}, fmt.Errorf("OS user %q not found: %w", name, err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err := errors.Join(err1, err2); err != nil {
		return osUser{}, fmt.Errorf("OS user %q: %w", name, err)
	}
	if uid == 0 {
		return osUser{}, fmt.Errorf("OS user %q is root; PostgreSQL refuses to run as root: set os_user", name)
	}
	if !root && uid != os.Geteuid() {
		return osUser{}, fmt.Errorf("OS user %q: the agent runs as uid %d and only root can run PostgreSQL as another user", name, os.Geteuid())
	}
	ou := osUser{name: name, uid: uid, gid: gid, home: u.HomeDir, drop: root}
	ou.groups = []uint32{uint32(gid)}
	if ids, err := u.GroupIds(); err == nil {
		for _, g := range ids {
			if n, err := strconv.Atoi(g); err == nil && n != gid {
				ou.groups = append(ou.groups, uint32(n))
			}
		}
	}
	return ou, nil
}

// sysProcAttr puts a child in its own session, so a Ctrl-C or a signal to
// the agent's process group never reaches PostgreSQL, and drops root's
// credentials when the agent is root.
func (u osUser) sysProcAttr() *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{Setsid: true}
	if u.drop {
		a.Credential = &syscall.Credential{Uid: uint32(u.uid), Gid: uint32(u.gid), Groups: u.groups}
	}
	return a
}

// env is the environment for PostgreSQL children: the agent's own, without
// any PG* variable (a stray PGDATA or PGPORT must not redirect a tool), with
// the C locale so messages the supervisor parses are stable, and with the
// OS user's HOME.
func (u osUser) env(extra ...string) []string {
	var out []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") || strings.HasPrefix(kv, "LC_") || strings.HasPrefix(kv, "LANG=") || strings.HasPrefix(kv, "HOME=") {
			continue
		}
		out = append(out, kv)
	}
	out = append(out, "LC_ALL=C", "LANG=C")
	if u.home != "" {
		out = append(out, "HOME="+u.home)
	}
	return append(out, extra...)
}

// chown gives path to the OS user; a no-op unless the agent is root
// (otherwise the agent already is that user).
func (u osUser) chown(path string) error {
	if !u.drop {
		return nil
	}
	if err := os.Lchown(path, u.uid, u.gid); err != nil {
		return fmt.Errorf("chown %s to %s: %w", path, u.name, err)
	}
	return nil
}

// mayEnter reports whether the OS user can search (traverse) dir, from its
// mode bits. ACLs are not consulted: they are rare on data volumes, and a
// false refusal names the directory so the operator can fix it.
func (u osUser) mayEnter(fi os.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return true
	}
	m := fi.Mode().Perm()
	switch {
	case int(st.Uid) == u.uid:
		return m&0o100 != 0
	case u.inGroup(st.Gid):
		return m&0o010 != 0
	default:
		return m&0o001 != 0
	}
}

func (u osUser) inGroup(gid uint32) bool {
	for _, g := range u.groups {
		if g == gid {
			return true
		}
	}
	return false
}

// checkParents verifies that every existing ancestor of dataDir can be
// traversed by the OS user and that the missing ones can be created. It
// changes nothing: the supervisor never chmods a directory it did not
// create. It returns the ancestors that do not exist yet, outermost first.
func (u osUser) checkParents(dataDir string) ([]string, error) {
	var missing []string
	dir := filepath.Dir(dataDir)
	for {
		fi, err := os.Stat(dir)
		if err == nil {
			if !fi.IsDir() {
				return nil, fmt.Errorf("datadir %s: %s is not a directory", dataDir, dir)
			}
			break
		}
		if !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("datadir %s: %w", dataDir, err)
		}
		missing = append([]string{dir}, missing...)
		dir = filepath.Dir(dir)
	}
	// dir is the deepest existing ancestor: new directories go there, made
	// by the agent itself (as root it may; otherwise it needs write access).
	if !u.drop {
		if err := syscall.Access(dir, 0o2|0o1); err != nil {
			return nil, fmt.Errorf("datadir %s: cannot create entries in %s: %w", dataDir, dir, err)
		}
	}
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return nil, fmt.Errorf("datadir %s: %w", dataDir, err)
		}
		if !u.mayEnter(fi) {
			return nil, fmt.Errorf("datadir %s: directory %s (mode %04o) is not accessible to OS user %s", dataDir, d, fi.Mode().Perm(), u.name)
		}
		if d == "/" {
			break
		}
	}
	return missing, nil
}

// makeParents creates the missing ancestors of dataDir, 0755 and owned by
// the OS user, after checking the existing ones.
func (u osUser) makeParents(dataDir string) error {
	missing, err := u.checkParents(dataDir)
	if err != nil {
		return err
	}
	for _, d := range missing {
		if err := os.Mkdir(d, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("create %s: %w", d, err)
		}
		// Mkdir applies the umask; the mode is set explicitly.
		if err := os.Chmod(d, 0o755); err != nil {
			return err
		}
		if err := u.chown(d); err != nil {
			return err
		}
	}
	return nil
}
