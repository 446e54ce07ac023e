package main

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/gpagent/gpagent/agent"
	"github.com/gpagent/gpagent/topology"
)

// demoFiles is a demo's folder: one subfolder per host (its agent.yaml,
// agent data dir, log and pid), cluster.yaml, the shared instance data,
// tls/ (the demo's CA, one agent certificate per host and an operator
// certificate), gossip.key, pgpass and env.
type demoFiles struct {
	dir   string
	hosts []demoHost
	spec  *topology.Spec
	// standbyPort is free for gpagent initstandby -P.
	standbyPort int
	// caFile, opCert and opKey are the cluster CA and the operator
	// certificate the demo (and the shell that sources env) calls the
	// agents with.
	caFile, opCert, opKey string
}

// The demo's TLS files, under DIR/tls.
const (
	demoTLSDir   = "tls"
	demoOperator = "demo"
)

// operatorTLS is the client TLS config of the demo's operator.
func (d *demoFiles) operatorTLS() (*tls.Config, error) {
	return clientTLSFiles(d.caFile, d.opCert, d.opKey)
}

// demoHost is one simulated host: an agent bound to its own loopback
// address.
type demoHost struct {
	name    string
	address string
	dir     string
	apiAddr string
}

// demoLayout names the hosts as Greenplum sites do: with one host it holds
// everything; with more, the first (mdw) holds the coordinator and the
// others (sdw1...) the segments, mirrors never on their primary's host.
func demoLayout(n int) (names []string, segmentHosts []string, perHost int) {
	if n == 1 {
		return []string{"sdw1"}, []string{"sdw1"}, 2
	}
	names = []string{"mdw"}
	for i := 1; i < n; i++ {
		names = append(names, fmt.Sprintf("sdw%d", i))
	}
	perHost = 1
	if n == 2 {
		perHost = 2
	}
	return names, names[1:], perHost
}

// prepareDemo writes a demo's configs into dir, or reuses the ones a
// previous run left there, so a demo folder can be started again.
func prepareDemo(dir string, hosts int, autoRecover bool) (*demoFiles, error) {
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
	specPath := filepath.Join(dir, "cluster.yaml")
	if _, err := os.Stat(specPath); err == nil {
		return loadDemo(dir)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	if len(entries) > 0 {
		return nil, fmt.Errorf("--dir %s: not empty and not a demo folder (no cluster.yaml)", dir)
	}
	if err := writeDemo(dir, hosts, autoRecover); err != nil {
		return nil, err
	}
	return loadDemo(dir)
}

func writeDemo(dir string, n int, autoRecover bool) error {
	names, segHosts, perHost := demoLayout(n)
	addrs := make([]string, n)
	for i := range addrs {
		addrs[i] = fmt.Sprintf("127.0.0.%d", i+1)
	}
	ports, err := freePortsOn(addrs, 3)
	if err != nil {
		return err
	}
	contents := len(segHosts) * perHost
	// One more port than the instances: a standby coordinator's.
	pgBase, err := freePortRunOn(addrs, 2+2*contents)
	if err != nil {
		return err
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	keyFile := filepath.Join(dir, "gossip.key")
	if err := os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
		return err
	}
	// Secure by default, as the documented config: a CA of the demo's
	// own, an agent certificate per host (CN agent.<host>, its address
	// as a SAN: the others reach its API and Raft there) and one
	// operator certificate, the credential of the shell that sources env.
	tlsDir := filepath.Join(dir, demoTLSDir)
	if err := os.MkdirAll(tlsDir, 0o700); err != nil {
		return err
	}
	caPath, caKeyPath, err := createCA(tlsDir, 365)
	if err != nil {
		return err
	}
	certs := make([][2]string, n)
	for i, name := range names {
		_, c, k, err := createCert(caPath, caKeyPath, tlsDir, certRequest{agent: name, ips: []net.IP{net.ParseIP(addrs[i])}, days: 365})
		if err != nil {
			return err
		}
		certs[i] = [2]string{c, k}
	}
	if _, _, _, err := createCert(caPath, caKeyPath, tlsDir, certRequest{operator: demoOperator, days: 365}); err != nil {
		return err
	}
	superPW, replPW := randomHex(), randomHex()
	var join []string
	for _, a := range addrs {
		join = append(join, net.JoinHostPort(a, strconv.Itoa(ports[2])))
	}
	for i, name := range names {
		hdir := filepath.Join(dir, name)
		if err := os.MkdirAll(hdir, 0o755); err != nil {
			return err
		}
		start := "bootstrap: true"
		if n > 1 {
			start = fmt.Sprintf("bootstrap_expect: %d\njoin: [%s]", n, strings.Join(join, ", "))
		}
		cfg := fmt.Sprintf(`# gpagent demo agent: host %s
name: %s
address: %s
data_dir: %s
api_addr: %s
raft_addr: %s
gossip_addr: %s
gossip_key_file: %s
tls:
  ca_file: %s
  cert_file: %s
  key_file: %s
%s
# The demo takes its instances down when it stops; a production agent
# leaves them running across its own restarts.
stop_instances_on_exit: true
auto_recover: %s
postgres:
  superuser: gpadmin
  superuser_password: %s
  replication_user: replicator
  replication_password: %s
  wal_keep_size: 512MB
`, name, name, addrs[i], filepath.Join(hdir, "agent"),
			net.JoinHostPort(addrs[i], strconv.Itoa(ports[0])), net.JoinHostPort(addrs[i], strconv.Itoa(ports[1])),
			net.JoinHostPort(addrs[i], strconv.Itoa(ports[2])), keyFile, caPath, certs[i][0], certs[i][1], start, autoRecoverWord(autoRecover), superPW, replPW)
		if err := os.WriteFile(filepath.Join(hdir, "agent.yaml"), []byte(cfg), 0o600); err != nil {
			return err
		}
	}
	data := filepath.Join(dir, "data")
	spec := topology.Spec{
		SegPrefix:   topology.DefaultSegPrefix,
		Coordinator: topology.CoordinatorSpec{Hostname: names[0], Address: addrs[0], Port: pgBase, DataDir: filepath.Join(data, "coordinator")},
		Primary:     topology.PortDirs{PortBase: pgBase + 1},
		Mirror: &topology.MirrorSpec{PortDirs: topology.PortDirs{PortBase: pgBase + 1 + contents},
			Placement: string(topology.PlacementGroup)},
	}
	for i, name := range names {
		if slices.Contains(segHosts, name) {
			spec.SegmentHosts = append(spec.SegmentHosts, topology.Host{Hostname: name, Address: addrs[i]})
		}
	}
	for range perHost {
		spec.Primary.DataDirs = append(spec.Primary.DataDirs, filepath.Join(data, "primary"))
		spec.Mirror.DataDirs = append(spec.Mirror.DataDirs, filepath.Join(data, "mirror"))
	}
	specYAML, err := spec.YAML()
	if err != nil {
		return err
	}
	header := fmt.Sprintf("# gpagent demo cluster: a coordinator and %d mirrored segments on %d hosts\n", contents, n)
	if err := os.WriteFile(filepath.Join(dir, "cluster.yaml"), append([]byte(header), specYAML...), 0o644); err != nil {
		return err
	}
	// libpq reads the password from here (the env file exports
	// PGPASSFILE), so gpagent connstr prints no secret.
	pgpass := fmt.Sprintf("*:*:*:gpadmin:%s\n", superPW)
	return os.WriteFile(filepath.Join(dir, "pgpass"), []byte(pgpass), 0o600)
}

// loadDemo reads a demo folder written by writeDemo.
func loadDemo(dir string) (*demoFiles, error) {
	spec, err := loadSpec(filepath.Join(dir, "cluster.yaml"))
	if err != nil {
		return nil, err
	}
	d := &demoFiles{dir: dir, spec: spec}
	tlsDir := filepath.Join(dir, demoTLSDir)
	d.caFile = filepath.Join(tlsDir, caCertFile)
	d.opCert = filepath.Join(tlsDir, agent.OperatorCNPrefix+demoOperator+".pem")
	d.opKey = filepath.Join(tlsDir, agent.OperatorCNPrefix+demoOperator+"-key.pem")
	for _, f := range []string{d.caFile, d.opCert, d.opKey} {
		if _, err := os.Stat(f); err != nil {
			return nil, fmt.Errorf("--dir %s: %w (a demo folder of an older gpagent, without TLS: start a new one)", dir, err)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		cfgPath := filepath.Join(dir, e.Name(), "agent.yaml")
		if _, err := os.Stat(cfgPath); err != nil {
			continue
		}
		cfg, err := agent.LoadConfig(cfgPath)
		if err != nil {
			return nil, err
		}
		d.hosts = append(d.hosts, demoHost{name: cfg.Name, address: cfg.Address, dir: filepath.Join(dir, e.Name()), apiAddr: cfg.APIAddr})
	}
	if len(d.hosts) == 0 {
		return nil, fmt.Errorf("--dir %s: no host folders with an agent.yaml", dir)
	}
	// mdw (or the only host) first: it holds the coordinator.
	for i, h := range d.hosts {
		if h.name == spec.Coordinator.Hostname {
			d.hosts[0], d.hosts[i] = d.hosts[i], d.hosts[0]
		}
	}
	contents := 0
	if p := spec.Primary; len(p.DataDirs) > 0 {
		contents = len(spec.SegmentHosts) * len(p.DataDirs)
	}
	d.standbyPort = spec.Coordinator.Port + 1 + 2*contents
	return d, nil
}

// freePortsOn finds n ports free on every address. They are free now,
// not reserved; the demo writes them into its config once and keeps them.
func freePortsOn(addrs []string, n int) ([]int, error) {
	var out []int
	for len(out) < n {
		ln, err := net.Listen("tcp", addrs[0]+":0")
		if err != nil {
			return nil, err
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if portFreeOn(addrs, port) && !slices.Contains(out, port) {
			out = append(out, port)
		}
	}
	return out, nil
}

// freePortRunOn finds n consecutive ports free on every address, for the
// instances, whose ports follow Greenplum's port_base + index layout. The
// search starts at a random run: two demos set up at the same moment (the
// instances listen only later) would otherwise both take the first one.
func freePortRunOn(addrs []string, n int) (int, error) {
	const first, last, step = 16432, 32000, 100
	runs := (last - first - n) / step
	start := mrand.IntN(runs)
	for i := range runs {
		base := first + (start+i)%runs*step
		ok := true
		for p := base; p < base+n && ok; p++ {
			ok = portFreeOn(addrs, p)
		}
		if ok {
			return base, nil
		}
	}
	return 0, errors.New("no run of free ports found for the demo instances between 16432 and 32000")
}

func portFreeOn(addrs []string, port int) bool {
	for _, a := range addrs {
		ln, err := net.Listen("tcp", net.JoinHostPort(a, strconv.Itoa(port)))
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
