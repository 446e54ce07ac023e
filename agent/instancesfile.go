package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/gpagent/gpagent/topology"
	"github.com/gpagent/gpagent/watchdog"
)

// instancesFile, in the data dir, lists this host's instances as the
// committed topology last placed them. It is what the agent needs when
// its Raft state cannot be read, and what the fence watchdog needs when
// the agent is stopped: which local instances are primaries, to fence
// them (else they would run on unsupervised and writable while the
// others fail them over).
const instancesFile = watchdog.InstancesFile

type instancesRecord = watchdog.Instances

// writeInstances records t's instances on this host if they differ from
// what this run last wrote.
func (e *executor) writeInstances(t *topology.Topology) {
	mine := e.a.indexed(t).OnHost(e.a.cfg.Name)
	e.mu.Lock()
	// Written when this host's instances change, not on every version:
	// a client's topology moves on every commit that changes its view,
	// and a file written per version cost the thousand agents of a
	// gpbench scale process 11 % of their CPU through an init. The
	// version in the file is the one the list was first seen at.
	same := e.instancesWritten != nil && slices.Equal(*e.instancesWritten, mine)
	e.mu.Unlock()
	if same {
		return
	}
	b, err := json.Marshal(instancesRecord{ConfigVersion: t.ConfigVersion, Instances: mine})
	if err != nil {
		return
	}
	path := filepath.Join(e.a.cfg.DataDir, instancesFile)
	if err := watchdog.WriteFileAtomic(path, b); err != nil {
		e.log.Warn("cannot record the local instances; a corrupt Raft dir could not fence them", "path", path, "err", err)
		return
	}
	e.mu.Lock()
	e.instancesWritten = &mine
	e.mu.Unlock()
}

// fenceRecordedPrimaries fences every primary instances.json lists, in
// parallel with a deadline each, stopping one that cannot be fenced. It
// runs when the Raft state cannot be read, just before the agent exits.
func fenceRecordedPrimaries(dataDir string, drv Driver, log *slog.Logger) (int, error) {
	rec, err := watchdog.ReadInstances(dataDir)
	if err != nil {
		return 0, err
	}
	var wg sync.WaitGroup
	errs := make([]error, len(rec.Instances))
	n := 0
	for i, s := range rec.Instances {
		if s.Role != topology.RolePrimary {
			continue
		}
		n++
		wg.Go(func() {
			inst := localInstance(s)
			if drv.PID(inst) == 0 {
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), fenceTimeout)
			ferr := drv.Fence(ctx, inst)
			cancel()
			if ferr == nil {
				log.Warn("primary fenced: the Raft state is unreadable", "dbid", s.DBID, "content", s.Content)
				return
			}
			ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := drv.Stop(ctx, inst); err != nil {
				errs[i] = fmt.Errorf("dbid %d: fence: %w; stop: %w", s.DBID, ferr, err)
				return
			}
			log.Warn("primary stopped (fence failed): the Raft state is unreadable", "dbid", s.DBID, "content", s.Content, "fence_err", ferr)
		})
	}
	wg.Wait()
	return n, errors.Join(errs...)
}
