package watchdog

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/gpagent/gpagent/topology"
)

// The files an agent keeps in its data dir for its watchdog (and for its
// own next run). Each is replaced whole (write then rename), so a reader
// sees the old content or the new, never half.
const (
	// LeaseFile holds the boot id and the agent's last lease renewal on
	// CLOCK_BOOTTIME, which runs on across agent restarts (not across
	// reboots, which the boot id tells apart): "<boot id> <ns>\n".
	LeaseFile = "lease"
	// FencedFile says which primaries the agent fenced for one lease:
	// "<renewal ns> <dbid,dbid,...>\n", the renewal the lease file named.
	FencedFile = "fenced"
	// InstancesFile lists this host's instances as the committed
	// topology last placed them.
	InstancesFile = "instances.json"
	// WatchdogFile names the watchdog in charge: the one the latest agent
	// started. A watchdog whose agent is gone hands over to it.
	WatchdogFile = "watchdog"
)

// Instances is InstancesFile's content.
type Instances struct {
	ConfigVersion uint64             `json:"config_version"`
	Instances     []topology.Segment `json:"instances"`
}

// Primaries lists the instances the topology names primary.
func (r Instances) Primaries() []topology.Segment {
	var out []topology.Segment
	for _, s := range r.Instances {
		if s.Role == topology.RolePrimary {
			out = append(out, s)
		}
	}
	return out
}

// ReadInstances reads dir's InstancesFile; a missing file is no instance.
func ReadInstances(dir string) (Instances, error) {
	path := filepath.Join(dir, InstancesFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return Instances{}, nil
	}
	if err != nil {
		return Instances{}, fmt.Errorf("%s: %w", path, err)
	}
	var rec Instances
	if err := json.Unmarshal(b, &rec); err != nil {
		return Instances{}, fmt.Errorf("%s: %w", path, err)
	}
	return rec, nil
}

// Stamp is one lease renewal: when, on CLOCK_BOOTTIME of boot BootID.
type Stamp struct {
	BootID  string
	Renewed int64 // ns on CLOCK_BOOTTIME
}

// FormatStamp is LeaseFile's content for s.
func FormatStamp(s Stamp) []byte { return fmt.Appendf(nil, "%s %d\n", s.BootID, s.Renewed) }

// ParseStamp reads LeaseFile's content.
func ParseStamp(b []byte) (Stamp, error) {
	id, at, ok := strings.Cut(strings.TrimSpace(string(b)), " ")
	ns, err := strconv.ParseInt(at, 10, 64)
	if !ok || err != nil || id == "" {
		return Stamp{}, fmt.Errorf("lease record %q: want \"<boot id> <ns>\"", b)
	}
	return Stamp{BootID: id, Renewed: ns}, nil
}

// ReadStamp reads dir's LeaseFile. ok is false when there is none or it
// cannot be read: no lease.
func ReadStamp(dir string) (s Stamp, ok bool) {
	b, err := os.ReadFile(filepath.Join(dir, LeaseFile))
	if err != nil {
		return Stamp{}, false
	}
	s, err = ParseStamp(b)
	return s, err == nil
}

// Fenced is FencedFile's content: for the lease renewed at Renewed, the
// agent fenced (or found safe: not running, or a standby) each primary
// in DBIDs.
type Fenced struct {
	Renewed int64
	DBIDs   []int
}

// Covers reports whether f vouches for dbid's fence.
func (f Fenced) Covers(dbid int) bool { return slices.Contains(f.DBIDs, dbid) }

// FormatFenced is FencedFile's content for f: "<renewal ns> <dbid,...>"
// ("-" for no dbid).
func FormatFenced(f Fenced) []byte {
	ids := "-"
	if len(f.DBIDs) > 0 {
		parts := make([]string, len(f.DBIDs))
		for i, d := range f.DBIDs {
			parts[i] = strconv.Itoa(d)
		}
		ids = strings.Join(parts, ",")
	}
	return fmt.Appendf(nil, "%d %s\n", f.Renewed, ids)
}

// ReadFenced reads dir's FencedFile (ok false: none, or unreadable).
func ReadFenced(dir string) (f Fenced, ok bool) {
	b, err := os.ReadFile(filepath.Join(dir, FencedFile))
	if err != nil {
		return Fenced{}, false
	}
	r, ids, cut := strings.Cut(strings.TrimSpace(string(b)), " ")
	ns, err := strconv.ParseInt(r, 10, 64)
	if !cut || err != nil {
		return Fenced{}, false
	}
	f.Renewed = ns
	if ids == "-" {
		return f, true
	}
	for _, x := range strings.Split(ids, ",") {
		d, err := strconv.Atoi(x)
		if err != nil {
			return Fenced{}, false
		}
		f.DBIDs = append(f.DBIDs, d)
	}
	return f, true
}

// WriteFileAtomic writes data to path (mode 0600) through a temporary
// file renamed into place, so a crash or a concurrent reader sees the old
// file or the new one, never half of one. No fsync: these records only
// have to outlive a process, and a crash of the host ends the boot, and
// with it the postmasters.
func WriteFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// BootNanos reads CLOCK_BOOTTIME.
func BootNanos() (int64, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0, err
	}
	return ts.Nano(), nil
}

// BootID names this boot of the host ("" if unknown).
func BootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
