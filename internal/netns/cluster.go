package netns

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gpagent/gpagent/topology"
)

// Fixed per-host ports: each host has its own namespace and address, so
// they never clash with each other or with anything in the root namespace.
const (
	APIPort     = 7070
	RaftPort    = 7071
	GossipPort  = 7072
	CoordPort   = 5432
	PrimaryBase = 6000
	MirrorBase  = 7000
	SuperUser   = "gpadmin"
)

// APIAddr is the address of host's agent API.
func APIAddr(h *Host) string { return fmt.Sprintf("%s:%d", h.Addr, APIPort) }

// Cluster is the files of a gpagent cluster laid over a network, as
// `gpagent demo` writes them for its hosts: the first host holds the
// coordinator, each of the others one primary, with group mirrors.
type Cluster struct {
	Dir           string
	SuperPassword string
	Spec          string // DIR/cluster.yaml, for gpagent init
	PassFile      string // DIR/pgpass, libpq's password file
	// Token is the cluster token of the agents' token_file (DIR/token):
	// $GPAGENT_TOKEN when set, else a new random one.
	Token string
}

// HostDir is DIR/<host>: agent.yaml, agent.log, agent.pid, agent/ (the
// agent's data_dir).
func (c *Cluster) HostDir(h *Host) string { return filepath.Join(c.Dir, h.Name) }

func randomSecret() string {
	b := make([]byte, 18)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// WriteCluster writes, under dir (which must exist and be reachable by
// the postgres OS user when running as root), the gossip key, every
// host's agent.yaml, cluster.yaml and a libpq password file.
func WriteCluster(dir string, n *Network) (*Cluster, error) {
	if len(n.Hosts) < 2 {
		return nil, fmt.Errorf("netns: a cluster needs a coordinator host and a segment host, not %d hosts", len(n.Hosts))
	}
	c := &Cluster{
		Dir:           dir,
		SuperPassword: randomSecret(),
		Spec:          filepath.Join(dir, "cluster.yaml"),
		PassFile:      filepath.Join(dir, "pgpass"),
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	keyFile := filepath.Join(dir, "gossip.key")
	if err := os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
		return nil, err
	}
	c.Token = os.Getenv("GPAGENT_TOKEN")
	if c.Token == "" {
		c.Token = randomSecret()
	}
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(c.Token+"\n"), 0o600); err != nil {
		return nil, err
	}
	replPW := randomSecret()
	var join []string
	for _, h := range n.Hosts {
		join = append(join, fmt.Sprintf("%s:%d", h.Addr, GossipPort))
	}
	for _, h := range n.Hosts {
		hdir := c.HostDir(h)
		if err := os.MkdirAll(hdir, 0o755); err != nil {
			return nil, err
		}
		cfg := fmt.Sprintf(`# gpagent agent: host %[1]s in network namespace %[2]s
name: %[1]s
address: %[3]s
data_dir: %[4]s
api_addr: %[3]s:%[5]d
raft_addr: %[3]s:%[6]d
gossip_addr: %[3]s:%[7]d
gossip_key_file: %[8]s
token_file: %[14]s
bootstrap_expect: %[9]d
join: [%[10]s]
stop_instances_on_exit: true
postgres:
  superuser: %[11]s
  superuser_password: %[12]s
  replication_user: replicator
  replication_password: %[13]s
  wal_keep_size: 256MB
`, h.Name, h.NS, h.Addr, filepath.Join(hdir, "agent"), APIPort, RaftPort, GossipPort,
			keyFile, len(n.Hosts), strings.Join(join, ", "), SuperUser, c.SuperPassword, replPW, tokenFile)
		if err := os.WriteFile(filepath.Join(hdir, "agent.yaml"), []byte(cfg), 0o600); err != nil {
			return nil, err
		}
	}
	data := filepath.Join(dir, "data")
	coord := n.Hosts[0]
	// One primary per segment host; group mirrors: with two segment
	// hosts, content 0's primary on the first with its mirror on the
	// second, content 1 the other way round.
	spec := topology.Spec{
		SegPrefix:   topology.DefaultSegPrefix,
		Coordinator: topology.CoordinatorSpec{Hostname: coord.Name, Address: coord.Addr, Port: CoordPort, DataDir: filepath.Join(data, "coordinator")},
		Primary:     topology.PortDirs{PortBase: PrimaryBase, DataDirs: []string{filepath.Join(data, "primary")}},
		Mirror: &topology.MirrorSpec{PortDirs: topology.PortDirs{PortBase: MirrorBase, DataDirs: []string{filepath.Join(data, "mirror")}},
			Placement: string(topology.PlacementGroup)},
	}
	for _, h := range n.Hosts[1:] {
		spec.SegmentHosts = append(spec.SegmentHosts, topology.Host{Hostname: h.Name, Address: h.Addr})
	}
	specYAML, err := spec.YAML()
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(c.Spec, append([]byte("# gpagent cluster over network namespaces\n"), specYAML...), 0o644); err != nil {
		return nil, err
	}
	pgpass := fmt.Sprintf("*:*:*:%s:%s\n", SuperUser, c.SuperPassword)
	if err := os.WriteFile(c.PassFile, []byte(pgpass), 0o600); err != nil {
		return nil, err
	}
	return c, nil
}

// Agent is a gpagent daemon running in its host's namespace.
type Agent struct {
	Host *Host
	cmd  *exec.Cmd
	done chan struct{}
	logf *os.File
}

// StartAgent runs `ip netns exec NS bin agent --config DIR/<host>/agent.yaml`
// in its own process group (a Ctrl-C meant for the caller does not reach
// it: the caller stops it in order), output appended to
// DIR/<host>/agent.log, its pid written to DIR/<host>/agent.pid. An
// Agent returned with an error is running all the same: stop it.
func (c *Cluster) StartAgent(bin string, h *Host) (*Agent, error) {
	hdir := c.HostDir(h)
	logf, err := os.OpenFile(filepath.Join(hdir, "agent.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	// Not tied to a context: the agent must outlive a cancelled caller
	// until Stop has let it stop its instances.
	cmd := h.Command(context.Background(), bin, "agent", "--config", filepath.Join(hdir, "agent.yaml"))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if h.NS == "" {
		// A host in the root namespace (gpbench scale's real hosts)
		// has no namespace for the caller's cleanup to delete: should
		// the caller die without stopping it (a test binary killed at
		// its timeout), the agent is told to stop, and stops its
		// instances as on any SIGTERM.
		cmd.SysProcAttr.Pdeathsig = syscall.SIGTERM
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start agent %s: %w", h.Name, err)
	}
	a := &Agent{Host: h, cmd: cmd, done: make(chan struct{}), logf: logf}
	go func() { _ = cmd.Wait(); close(a.done) }()
	if err := os.WriteFile(filepath.Join(hdir, "agent.pid"), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
		return a, err
	}
	return a, nil
}

// Pid is the agent's process id.
func (a *Agent) Pid() int { return a.cmd.Process.Pid }

// Exited says whether the agent process has ended.
func (a *Agent) Exited() bool {
	select {
	case <-a.done:
		return true
	default:
		return false
	}
}

// Stop sends SIGTERM (the agent then stops its instances: the configs set
// stop_instances_on_exit) and waits up to timeout for it to exit; then it
// kills it and says so in the error.
func (a *Agent) Stop(timeout time.Duration) error {
	defer a.logf.Close()
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
		return nil
	case <-time.After(timeout):
		_ = a.cmd.Process.Kill()
		<-a.done
		return fmt.Errorf("agent %s did not stop within %s of SIGTERM; killed it", a.Host.Name, timeout)
	}
}

// KillProcessesUnder SIGKILLs every process whose command line names a
// path under dir (postmasters: postgres -D DIR/...), and any postmaster a
// DIR/data/.../postmaster.pid names: what stopped agents left behind. It
// returns how many it killed.
func KillProcessesUnder(dir string) int {
	killed := 0
	self := os.Getpid()
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		for _, arg := range bytes.Split(cmdline, []byte{0}) {
			if strings.HasPrefix(string(arg), dir+"/") {
				if syscall.Kill(pid, syscall.SIGKILL) == nil {
					killed++
				}
				break
			}
		}
	}
	pidFiles, _ := filepath.Glob(filepath.Join(dir, "data", "*", "*", "postmaster.pid"))
	more, _ := filepath.Glob(filepath.Join(dir, "data", "*", "postmaster.pid"))
	for _, f := range append(pidFiles, more...) {
		pid, err := postmasterPID(filepath.Dir(f))
		if err != nil || syscall.Kill(pid, 0) != nil {
			continue
		}
		// Only if that pid still is a postgres of ours, not a reused pid.
		cmdline, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
		if bytes.Contains(cmdline, []byte(filepath.Dir(f))) && syscall.Kill(pid, syscall.SIGKILL) == nil {
			killed++
		}
	}
	return killed
}

// postmasterPID reads the first line of DATADIR/postmaster.pid.
func postmasterPID(datadir string) (int, error) {
	b, err := os.ReadFile(filepath.Join(datadir, "postmaster.pid"))
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || pid <= 0 {
		return 0, errors.New(datadir + "/postmaster.pid: no pid on its first line")
	}
	return pid, nil
}
