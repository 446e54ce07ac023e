package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"github.com/gpagent/gpagent/agent"
	"github.com/gpagent/gpagent/topology"
)

// demoFiles is a demo's folder: agent.yaml, cluster.yaml, the agent's data
// dir and the instances' data, all under dir.
type demoFiles struct {
	dir     string
	apiAddr string
	spec    *topology.Spec
	// standbyPort is free for gpagent initstandby -P.
	standbyPort int
}

const (
	demoHost     = "sdw1"
	demoAddress  = "127.0.0.1"
	demoSegments = 2
)

// prepareDemo writes a demo's configs into dir, or reuses the ones a
// previous run left there, so a demo folder can be started again.
func prepareDemo(dir string, autoRecover bool) (*demoFiles, error) {
	var err error
	if dir == "" {
		if dir, err = os.MkdirTemp("", "gpagent-demo-"); err != nil {
			return nil, err
		}
	} else if dir, err = filepath.Abs(dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("--dir %s: %w", dir, err)
	}
	// The instances run as the postgres OS user when the demo runs as
	// root: it must be able to reach its data dirs below this folder.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, fmt.Errorf("--dir %s: %w", dir, err)
	}
	agentPath := filepath.Join(dir, "agent.yaml")
	specPath := filepath.Join(dir, "cluster.yaml")
	if _, err := os.Stat(agentPath); err == nil {
		return loadDemo(dir, agentPath, specPath)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	if len(entries) > 0 {
		return nil, fmt.Errorf("--dir %s: not empty and not a demo folder (no agent.yaml)", dir)
	}
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	// One more port than the instances: a standby coordinator's.
	pgBase, err := freePortRun(2 + 2*demoSegments)
	if err != nil {
		return nil, err
	}
	apiAddr := net.JoinHostPort(demoAddress, strconv.Itoa(ports[0]))
	agentYAML := fmt.Sprintf(`# gpagent demo agent (one host)
name: %s
address: %s
data_dir: %s
api_addr: %s
raft_addr: %s
bootstrap: true
# The demo takes its instances down when it stops; a production agent
# leaves them running across its own restarts.
stop_instances_on_exit: true
auto_recover: %s
postgres:
  superuser: gpadmin
  superuser_password: %s
  replication_user: replicator
  replication_password: %s
  wal_keep_size: 256MB
`, demoHost, demoAddress, filepath.Join(dir, "agent"), apiAddr, net.JoinHostPort(demoAddress, strconv.Itoa(ports[1])), autoRecoverWord(autoRecover), randomHex(), randomHex())
	data := filepath.Join(dir, "data")
	specYAML := fmt.Sprintf(`# gpagent demo cluster: a coordinator and %[1]d segments with mirrors on one host
seg_prefix: gpseg
coordinator:
  hostname: %[2]s
  address: %[3]s
  port: %[4]d
  datadir: %[5]s/coordinator
segment_hosts:
  - hostname: %[2]s
    address: %[3]s
primary:
  port_base: %[6]d
  datadirs: [%[5]s/primary, %[5]s/primary]
mirror:
  port_base: %[7]d
  datadirs: [%[5]s/mirror, %[5]s/mirror]
  placement: group
`, demoSegments, demoHost, demoAddress, pgBase, data, pgBase+1, pgBase+1+demoSegments)
	if err := os.WriteFile(agentPath, []byte(agentYAML), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(specPath, []byte(specYAML), 0o644); err != nil {
		return nil, err
	}
	cfg, err := agent.ParseConfig([]byte(agentYAML))
	if err != nil {
		return nil, err
	}
	// libpq reads the password from here (the env file exports
	// PGPASSFILE), so gpagent connstr prints no secret.
	pgpass := fmt.Sprintf("*:*:*:%s:%s\n", cfg.SuperUser, cfg.SuperPassword)
	if err := os.WriteFile(filepath.Join(dir, "pgpass"), []byte(pgpass), 0o600); err != nil {
		return nil, err
	}
	return loadDemo(dir, agentPath, specPath)
}

func loadDemo(dir, agentPath, specPath string) (*demoFiles, error) {
	cfg, err := agent.LoadConfig(agentPath)
	if err != nil {
		return nil, err
	}
	spec, err := loadSpec(specPath)
	if err != nil {
		return nil, err
	}
	return &demoFiles{dir: dir, apiAddr: cfg.APIAddr, spec: spec, standbyPort: spec.Coordinator.Port + 1 + 2*demoSegments}, nil
}

// freePorts asks the kernel for n free loopback ports. They are free now,
// not reserved; the demo writes them into its config once and keeps them.
func freePorts(n int) ([]int, error) {
	var out []int
	for range n {
		ln, err := net.Listen("tcp", demoAddress+":0")
		if err != nil {
			return nil, err
		}
		defer ln.Close()
		out = append(out, ln.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}

// freePortRun finds n consecutive free ports for the instances, whose
// ports follow Greenplum's port_base + index layout.
func freePortRun(n int) (int, error) {
	for base := 16432; base+n < 32000; base += 100 {
		if portsFree(base, n) {
			return base, nil
		}
	}
	return 0, errors.New("no run of free ports found for the demo instances between 16432 and 32000")
}

func portsFree(base, n int) bool {
	for p := base; p < base+n; p++ {
		ln, err := net.Listen("tcp", net.JoinHostPort(demoAddress, strconv.Itoa(p)))
		if err != nil {
			return false
		}
		ln.Close()
	}
	return true
}

func randomHex() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func autoRecoverWord(on bool) string {
	if on {
		return "incremental"
	}
	return "off"
}
