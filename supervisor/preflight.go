package supervisor

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"syscall"
)

// Preflight checks, without changing anything, that inst could be created
// on this host: its data directory is absent, empty, or already gpagent's
// for this cluster and dbid (it will be adopted or finished); the OS user
// can reach it; and its address and port are free to listen on (unless the
// instance is ours and already running there). The error is one line
// naming the problem.
func (s *Supervisor) Preflight(clusterID string, inst Instance) error {
	if err := inst.validate(); err != nil {
		return err
	}
	state, err := s.classify(clusterID, inst)
	if err != nil {
		return err
	}
	if _, err := s.user.checkParents(inst.DataDir); err != nil {
		return err
	}
	if state == dirEmpty && !s.user.drop {
		// Not root: the agent cannot chown the directory, and PostgreSQL
		// insists on owning its data directory.
		if err := ownedBy(inst.DataDir, s.user.uid); err != nil {
			return err
		}
	}
	if state == dirOurs {
		if _, ok, err := findPostmaster(inst.DataDir); err == nil && ok {
			return nil // running already: its port is rightly taken
		}
	}
	return checkListen(inst.Address, inst.Port)
}

// checkListen tries to listen where the instance will, and says why it
// cannot in the words an operator needs.
func checkListen(addr string, port int) error {
	ln, err := net.Listen("tcp", net.JoinHostPort(addr, strconv.Itoa(port)))
	if err == nil {
		return ln.Close()
	}
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		return fmt.Errorf("port %d on %s is in use", port, addr)
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return fmt.Errorf("address %s is not an address of this host", addr)
	case errors.Is(err, syscall.EACCES):
		return fmt.Errorf("port %d on %s: permission denied", port, addr)
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return fmt.Errorf("address %s does not resolve: %v", addr, dnsErr.Err)
	}
	return fmt.Errorf("cannot listen on %s port %d: %w", addr, port, err)
}

func ownedBy(path string, uid int) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != uid {
		return fmt.Errorf("datadir %s is owned by uid %d, not the OS user (uid %d)", path, st.Uid, uid)
	}
	return nil
}
