package simpg_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/gpagent/gpagent/simpg"
	"github.com/gpagent/gpagent/supervisor"
)

// BenchmarkSimSyncCommit: one commit on a primary whose sync standby
// must flush it first.
func BenchmarkSimSyncCommit(b *testing.B) {
	w := simpg.NewWorld(simpg.Options{})
	defer w.Close()
	p := newPairB(b, w)
	ctx := context.Background()
	for b.Loop() {
		if _, _, err := w.Commit(ctx, p.prim.Address, p.prim.Port); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSimProbeThousand: one probe of each of 1,000 instances (500
// synced pairs), what one probe round of a thousand-instance cluster asks.
func BenchmarkSimProbeThousand(b *testing.B) {
	w := simpg.NewWorld(simpg.Options{})
	defer w.Close()
	ctx := context.Background()
	var hosts []*simpg.Host
	var insts []supervisor.Instance
	for i := range 500 {
		h := w.Host(fmt.Sprintf("h%d", i))
		p := supervisor.Instance{DBID: 2*i + 1, Content: i, Address: "127.0.1.1", Port: 10000 + i, DataDir: fmt.Sprintf("/d/p%d", i)}
		m := supervisor.Instance{DBID: 2*i + 2, Content: i, Address: "127.0.1.2", Port: 10000 + i, DataDir: fmt.Sprintf("/d/m%d", i)}
		if err := h.InitPrimary(ctx, cluster, p); err != nil {
			b.Fatal(err)
		}
		if err := h.CreateMirror(ctx, cluster, m, supervisor.Upstream{Address: p.Address, Port: p.Port}, nil); err != nil {
			b.Fatal(err)
		}
		if err := h.SetSyncStandby(ctx, p, []string{supervisor.AppName(m.DBID)}); err != nil {
			b.Fatal(err)
		}
		hosts = append(hosts, h, h)
		insts = append(insts, p, m)
	}
	for b.Loop() {
		for i, in := range insts {
			if _, err := hosts[i].Probe(ctx, in); err != nil {
				b.Fatal(err)
			}
		}
	}
}

func newPairB(b *testing.B, w *simpg.World) pair {
	ctx := context.Background()
	p := pair{
		w: w, h1: w.Host("h1"), h2: w.Host("h2"),
		prim: supervisor.Instance{DBID: 2, Address: "127.0.0.1", Port: 6000, DataDir: "/data/p0"},
		mirr: supervisor.Instance{DBID: 3, Address: "127.0.0.2", Port: 7000, DataDir: "/data/m0"},
	}
	if err := p.h1.InitPrimary(ctx, cluster, p.prim); err != nil {
		b.Fatal(err)
	}
	if err := p.h2.CreateMirror(ctx, cluster, p.mirr, p.up(), nil); err != nil {
		b.Fatal(err)
	}
	if err := p.h1.SetSyncStandby(ctx, p.prim, []string{supervisor.AppName(p.mirr.DBID)}); err != nil {
		b.Fatal(err)
	}
	return p
}
