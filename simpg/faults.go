package simpg

import "time"

// Crash kills the postmaster at address:port (kill -9): records not yet
// flushed are lost, commits waiting for their standby end undecided, and
// the exit is delivered on its host driver's Exits if that driver tracks it.
func (w *World) Crash(address string, port int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.crash(w.get(address, port))
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
	w.mu.Lock()
	w.probeDelay = d
	w.mu.Unlock()
}

// KillHost crashes every instance of the host name and stops its driver:
// every call of it fails with ErrHostDown from now on. World.Host(name)
// afterwards is the host back from a reboot, its instances stopped.
func (w *World) KillHost(name string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if h := w.hosts[name]; h != nil {
		h.dead = true
	}
	for _, in := range w.insts {
		if in.host == name {
			w.crash(in)
		}
	}
}

func (w *World) setFlag(address string, port int, set func(*instance)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	in := w.get(address, port)
	set(in)
	in.bump()
	if up := w.insts[in.connected]; up != nil {
		up.bump()
	}
	for _, d := range in.downstream {
		d.bump()
	}
}
