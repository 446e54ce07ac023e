package main

import (
	"fmt"
	"testing"

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
