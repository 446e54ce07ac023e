package supervisor

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// File names inside a data directory.
const (
	managedConfFile = "gpagent.conf"
	startupLogFile  = "gpagent-startup.log"
	standbySignal   = "standby.signal"
)

// staticSettings are appended to postgresql.conf at creation. They are the
// same on every instance of the cluster, so it does not matter that
// pg_basebackup copies a primary's postgresql.conf to its mirror. What
// differs per instance lives in gpagent.conf, included last so that it
// wins.
func (s *Supervisor) staticSettings() string {
	return `
# --- added by gpagent at creation; per-instance settings are in gpagent.conf ---
wal_level = replica
max_wal_senders = 16
max_replication_slots = 16
hot_standby = on
wal_log_hints = on			# pg_rewind needs it (data checksums alone would do too)
wal_keep_size = ` + gucQuote(s.cfg.WalKeepSize) + `
synchronous_commit = on
# A replication connection that died with a partition is dropped in
# seconds, not the default minute, and a mirror reconnects within a second
# of its primary coming back.
wal_sender_timeout = '10s'
wal_receiver_timeout = '10s'
wal_retrieve_retry_interval = '1s'
logging_collector = on
log_directory = 'log'
unix_socket_directories = ''		# TCP only: a socket in /tmp would collide between hosts sharing /tmp
password_encryption = scram-sha-256
include_if_exists = 'gpagent.conf'
`
}

// hbaConf is the whole pg_hba.conf: passwords (SCRAM) from anywhere, and
// replication only for the replication role. There is no "local" line
// because the instances have no Unix socket.
func (s *Supervisor) hbaConf() string {
	r := `"` + s.cfg.ReplUser + `"`
	return "# written by gpagent\n" +
		"# TYPE  DATABASE     USER  ADDRESS    METHOD\n" +
		"host    all          all   0.0.0.0/0  scram-sha-256\n" +
		"host    all          all   ::/0       scram-sha-256\n" +
		"host    replication  " + r + "  0.0.0.0/0  scram-sha-256\n" +
		"host    replication  " + r + "  ::/0       scram-sha-256\n"
}

// managedConf is gpagent.conf: everything that differs per instance or
// changes at run time. The supervisor owns the file and rewrites it whole.
type managedConf struct {
	ListenAddresses  string
	Port             int
	SyncStandbyNames string // the GUC value, already formatted
	PrimaryConninfo  string // mirrors only; holds the replication password, hence mode 0600
	PrimarySlotName  string
	// ReadOnly makes new transactions read-only (a fenced primary): libpq
	// with target_session_attrs=read-write then passes it by.
	ReadOnly bool
	// WalKeepSize, when set, overrides postgresql.conf's for one step:
	// pg_rewind's crash recovery of its target must recycle no WAL it
	// still needs to read.
	WalKeepSize string
}

var managedKeys = []string{"listen_addresses", "port", "synchronous_standby_names", "primary_conninfo", "primary_slot_name"}

func (c managedConf) render() []byte {
	var b bytes.Buffer
	b.WriteString("# Managed by gpagent: rewritten whole on every change, do not edit.\n")
	vals := map[string]string{
		"listen_addresses":          gucQuote(c.ListenAddresses),
		"port":                      strconv.Itoa(c.Port),
		"synchronous_standby_names": gucQuote(c.SyncStandbyNames),
		"primary_conninfo":          gucQuote(c.PrimaryConninfo),
		"primary_slot_name":         gucQuote(c.PrimarySlotName),
	}
	for _, k := range managedKeys {
		fmt.Fprintf(&b, "%s = %s\n", k, vals[k])
	}
	if c.WalKeepSize != "" {
		fmt.Fprintf(&b, "wal_keep_size = %s\n", gucQuote(c.WalKeepSize))
	}
	if c.ReadOnly {
		b.WriteString("default_transaction_read_only = on\n")
	}
	return b.Bytes()
}

// parseManagedConf reads back what render wrote. It accepts only that
// shape: the file is not for hand editing, and a surprise is an error.
func parseManagedConf(data []byte) (managedConf, error) {
	var c managedConf
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return c, fmt.Errorf("line %d: no '='", n)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if k == "default_transaction_read_only" {
			c.ReadOnly = v == "on"
			continue
		}
		if k == "port" {
			p, err := strconv.Atoi(v)
			if err != nil {
				return c, fmt.Errorf("line %d: port %q", n, v)
			}
			c.Port = p
			continue
		}
		s, err := gucUnquote(v)
		if err != nil {
			return c, fmt.Errorf("line %d: %w", n, err)
		}
		switch k {
		case "listen_addresses":
			c.ListenAddresses = s
		case "synchronous_standby_names":
			c.SyncStandbyNames = s
		case "primary_conninfo":
			c.PrimaryConninfo = s
		case "primary_slot_name":
			c.PrimarySlotName = s
		case "wal_keep_size":
			c.WalKeepSize = s
		default:
			return c, fmt.Errorf("line %d: unexpected setting %q", n, k)
		}
	}
	return c, sc.Err()
}

// gucQuote quotes a string for a PostgreSQL configuration file, where a
// backslash is an escape and a quote is doubled.
func gucQuote(v string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `''`).Replace(v) + "'"
}

func gucUnquote(v string) (string, error) {
	if len(v) < 2 || v[0] != '\'' || v[len(v)-1] != '\'' {
		return "", fmt.Errorf("value %s is not quoted", v)
	}
	in := v[1 : len(v)-1]
	var b strings.Builder
	for i := 0; i < len(in); i++ {
		c := in[i]
		if (c == '\\' || c == '\'') && i+1 < len(in) {
			i++
			c = in[i]
		}
		b.WriteByte(c)
	}
	return b.String(), nil
}

// syncNames formats application names for synchronous_standby_names. A
// plain list means FIRST 1: the first connected name is the synchronous
// standby (sync_state "sync"), any others wait as "potential".
func syncNames(apps []string) (string, error) {
	q := make([]string, 0, len(apps))
	for _, a := range apps {
		if a == "" || strings.ContainsAny(a, "\",\n") {
			return "", fmt.Errorf("application name %q cannot be used in synchronous_standby_names", a)
		}
		q = append(q, `"`+a+`"`)
	}
	return strings.Join(q, ", "), nil
}

func (s *Supervisor) readManagedConf(dataDir string) (managedConf, error) {
	p := filepath.Join(dataDir, managedConfFile)
	data, err := os.ReadFile(p)
	if err != nil {
		return managedConf{}, err
	}
	c, err := parseManagedConf(data)
	if err != nil {
		return c, fmt.Errorf("%s: %w", p, err)
	}
	return c, nil
}

func (s *Supervisor) writeManagedConf(dataDir string, c managedConf) error {
	return s.writeFileAtomic(filepath.Join(dataDir, managedConfFile), c.render(), 0o600)
}

// writeFileAtomic replaces path by a new file with data, so PostgreSQL
// never reads a half-written configuration on a reload, and a crash leaves
// either the old file or the new one. The file is owned by the OS user.
func (s *Supervisor) writeFileAtomic(path string, data []byte, perm os.FileMode) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Chmod(perm); err != nil {
		return err
	}
	if err = s.user.chown(f.Name()); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

// syncDir makes a rename durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return err
	}
	return nil
}

// appendStatic adds the static settings to a fresh postgresql.conf.
func (s *Supervisor) appendStatic(dataDir string) error {
	p := filepath.Join(dataDir, "postgresql.conf")
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(s.staticSettings()); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
