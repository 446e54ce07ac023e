package agent

import (
	"context"
	"io"

	"github.com/gpagent/gpagent/supervisor"
)

// Driver is what the agent does to the PostgreSQL instances of its host.
// supervisor.Supervisor is the real one; simpg's is an in-memory model the
// in-process tests and the scale benchmark run many of. Every method is
// safe for concurrent use, and calls on one instance are serialized by the
// driver.
type Driver interface {
	// Exits delivers the dbid of a local postmaster that exited.
	Exits() <-chan int
	// PID is the running postmaster's pid, 0 if none.
	PID(inst supervisor.Instance) int
	// Adopt takes over a postmaster left running by an earlier agent.
	Adopt(inst supervisor.Instance) (pid int, ok bool, err error)
	// Probe reads the instance's health (pg_is_in_recovery,
	// pg_stat_replication, ...) within the driver's probe timeout.
	Probe(ctx context.Context, inst supervisor.Instance) (supervisor.Health, error)

	InitPrimary(ctx context.Context, clusterID string, inst supervisor.Instance) error
	CreateMirror(ctx context.Context, clusterID string, inst supervisor.Instance, up supervisor.Upstream, progress func(done, total int64)) error
	Start(ctx context.Context, inst supervisor.Instance) error
	Stop(ctx context.Context, inst supervisor.Instance) error
	Promote(ctx context.Context, inst supervisor.Instance) error
	// Kill ends inst at once, with no shutdown, even hung or stopped
	// (SIGSTOP): its postmaster and every process of its data directory
	// are killed, and it returns once they are gone. It takes no
	// per-instance lock. Its exit is not reported on Exits.
	Kill(ctx context.Context, inst supervisor.Instance) error
	// Rejoin starts a cleanly stopped primary as a standby of up.
	Rejoin(ctx context.Context, inst supervisor.Instance, up supervisor.Upstream) error
	// CheckpointLSN reads a stopped instance's last checkpoint and
	// whether it was shut down cleanly.
	CheckpointLSN(ctx context.Context, inst supervisor.Instance) (lsn uint64, clean bool, err error)
	Rewind(ctx context.Context, clusterID string, inst supervisor.Instance, up supervisor.Upstream, progress func(done, total int64)) error
	// WaitWritable waits until up accepts writes.
	WaitWritable(ctx context.Context, up supervisor.Upstream) error
	Destroy(ctx context.Context, clusterID string, inst supervisor.Instance) error
	// Ours reports whether the data dir holds an instance of clusterID.
	Ours(clusterID string, inst supervisor.Instance) bool
	// Preflight checks that the instance can be created (dir, port).
	Preflight(clusterID string, inst supervisor.Instance) error

	SetSyncStandby(ctx context.Context, inst supervisor.Instance, appNames []string) error
	Fence(ctx context.Context, inst supervisor.Instance) error
	Unfence(ctx context.Context, inst supervisor.Instance) error

	// DataFiles and ServeDataFiles serve a primary's files to the agent
	// building its mirror.
	DataFiles(inst supervisor.Instance) ([]supervisor.DataFile, error)
	ServeDataFiles(inst supervisor.Instance, ranges []supervisor.FileRange, w io.Writer, setLength func(int64)) error
}

var _ Driver = (*supervisor.Supervisor)(nil)
