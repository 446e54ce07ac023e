package simpg

import "time"

// Crash kills the postmaster at address:port (kill -9): records not yet
// flushed are lost, commits waiting for their standby end undecided, and
// the exit is delivered on its host driver's Exits if that driver tracks it.
func (w *World) Crash(address string, port int) {
	in := w.get(address, port)
	defer w.lock(in).unlock()
	w.crash(in)
}

// Hang freezes the instance at address:port (every process stopped, as a
// frozen cgroup): probes and commits block, nothing replicates from or to
// it, though its replication connections stay open.
func (w *World) Hang(address string, port int) {
	w.setFlag(address, port, func(in *instance) { in.hung = in.running })
}

// Resume thaws an instance frozen by Hang.
func (w *World) Resume(address string, port int) {
	w.setFlag(address, port, func(in *instance) { in.hung = false })
}

// StickConfig makes every configuration change of the instance at
// address:port (sync standby switch, fence, unfence) hang until its
// caller gives up or UnstickConfig: one stuck backend, while the server
// still answers probes and commits.
func (w *World) StickConfig(address string, port int) {
	w.setFlag(address, port, func(in *instance) { in.stuckConf = true })
}

// UnstickConfig lets configuration changes through again.
func (w *World) UnstickConfig(address string, port int) {
	w.setFlag(address, port, func(in *instance) { in.stuckConf = false })
}

// StallLink stalls the replication link of the standby at address:port:
// its pg_stat_replication row on the primary stays "streaming" but its
// flush position stops moving.
func (w *World) StallLink(address string, port int) {
	w.setFlag(address, port, func(in *instance) { in.stalled = true })
}

// ResumeLink lets a stalled link move again.
func (w *World) ResumeLink(address string, port int) {
	w.setFlag(address, port, func(in *instance) { in.stalled = false })
}

// SlowDisk adds d to every flush of the instance at address:port (its
// commits as a primary, each received batch as a standby); 0 restores it.
func (w *World) SlowDisk(address string, port int, d time.Duration) {
	w.setFlag(address, port, func(in *instance) { in.slowDisk = d })
}

// SlowProbes makes every probe of every instance take d before it
// answers, as a real probe's connection and queries take time on a
// loaded host (bounded by the probe's context); 0 restores it.
func (w *World) SlowProbes(d time.Duration) {
	w.probeDelay.Store(int64(d))
}

// KillHost crashes every instance of the host name and stops its driver:
// every call of it fails with ErrHostDown from now on. World.Host(name)
// afterwards is the host back from a reboot, its instances stopped.
func (w *World) KillHost(name string) {
	// Dead first: an operation of the driver checks it with the
	// instance's lock held, so none starts an instance crashed here.
	if h := w.host(name); h != nil {
		h.dead.Store(true)
	}
	w.insts.Range(func(_, v any) bool {
		in := v.(*instance)
		ls := w.lockOne(in)
		ours := in.host == name && in.running
		ls.unlock()
		if ours {
			ls = w.lock(in)
			if in.host == name {
				w.crash(in)
			}
			ls.unlock()
		}
		return true
	})
}

func (w *World) setFlag(address string, port int, set func(*instance)) {
	in := w.get(address, port)
	defer w.lock(in).unlock()
	set(in)
	in.bump()
	if up := w.lookup(in.connected); up != nil {
		up.bump()
	}
	for _, d := range in.downstream {
		d.bump()
	}
}
