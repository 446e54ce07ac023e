package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/gpagent/gpagent/agent"
	"github.com/gpagent/gpagent/topology"
)

// The demo's cluster.yaml and agent.yaml files load back, and the spec
// lays out every content with a mirror on the demo's hosts.
func TestWriteDemo_FilesLoad(t *testing.T) {
	for _, hosts := range []int{1, 3} {
		t.Run(fmt.Sprintf("%d hosts", hosts), func(t *testing.T) {
			dir := t.TempDir()
			if err := writeDemo(dir, hosts, false); err != nil {
				t.Fatalf("writeDemo: %v", err)
			}
			d, err := loadDemo(dir)
			if err != nil {
				t.Fatalf("loadDemo: %v", err)
			}
			if len(d.hosts) != hosts {
				t.Fatalf("%d host folders, want %d", len(d.hosts), hosts)
			}
			// Secure by default: every agent runs TLS with its own
			// certificate (CN agent.<host>, its address a SAN) of the
			// demo's CA, and a gossip key.
			for _, h := range d.hosts {
				cfg, err := agent.LoadConfig(filepath.Join(h.dir, "agent.yaml"))
				if err != nil {
					t.Fatal(err)
				}
				if cfg.TLSCAFile != d.caFile || cfg.TLSCertFile == "" || len(cfg.GossipKeys) == 0 || cfg.Insecure {
					t.Fatalf("host %s: ca_file %q cert_file %q, %d gossip keys, insecure %v: want TLS with the demo's CA and a gossip key", h.name, cfg.TLSCAFile, cfg.TLSCertFile, len(cfg.GossipKeys), cfg.Insecure)
				}
				pair, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
				if err != nil {
					t.Fatal(err)
				}
				leaf, err := x509.ParseCertificate(pair.Certificate[0])
				if err != nil {
					t.Fatal(err)
				}
				if leaf.Subject.CommonName != agent.AgentCNPrefix+h.name || leaf.VerifyHostname(h.address) != nil {
					t.Errorf("host %s: certificate CN %q for %v, want agent.%s for %s", h.name, leaf.Subject.CommonName, leaf.IPAddresses, h.name, h.address)
				}
			}
			if _, err := d.operatorTLS(); err != nil {
				t.Fatalf("the operator's TLS files: %v", err)
			}
			segs, err := d.spec.Segments(true)
			if err != nil {
				t.Fatalf("the demo spec lays out no cluster: %v", err)
			}
			_, segHosts, perHost := demoLayout(hosts)
			contents := len(segHosts) * perHost
			topo := &topology.Topology{Segments: segs}
			for c := range contents {
				if _, ok := topo.Mirror(c); !ok {
					t.Errorf("content %d has no mirror in the demo spec", c)
				}
			}
			if got := len(topo.Contents()); got != contents+1 {
				t.Errorf("%d contents, want %d segments and the coordinator", got, contents)
			}
		})
	}
}
