// Package simpg simulates the PostgreSQL instances of a cluster in
// memory, so that tests can run several agents (and a benchmark a
// thousand) in one process without PostgreSQL.
//
// A World holds every simulated instance, keyed by address and port, and
// the faults a test injects into them. World.Host returns the driver of
// one host, which does what supervisor.Supervisor does to real instances
// (it satisfies agent.Driver). World.Commit is a client transaction.
//
// The model keeps what matters for data safety as PostgreSQL has it, so
// that a lost acknowledged commit in the model means a lost commit in real
// PostgreSQL, and the other way round:
//
//   - a WAL per instance, a list of records (commits and checkpoints) with
//     an insert and a flush position; a crash loses what was not flushed
//     and keeps the rest, including commits never acknowledged;
//   - a commit on a primary whose synchronous_standby_names is set waits
//     until the synchronous standby (the first named one streaming from
//     it) has flushed past it; a cancelled wait leaves the commit in the
//     WAL ("canceling wait for synchronous replication");
//   - a standby streams from its configured upstream only while its WAL is
//     a prefix of the upstream's: a standby that diverged (an old primary
//     with commits its promoted mirror lacks) never streams until it is
//     rewound, and a rewind discards what the upstream lacks;
//   - a clean shutdown of a primary sends every record, its shutdown
//     checkpoint last, to the standbys streaming from it.
//
// Replication is event driven: each instance has a channel closed on every
// change, and a running standby has one goroutine that waits on its own
// and its upstream's; an idle cluster costs no CPU.
//
// Where the real supervisor and this brief differ, simpg follows the
// supervisor: PID reports a running postmaster whether or not this driver
// adopted it (the supervisor reads postmaster.pid); only adopted or
// started instances are reported on Exits.
package simpg
