// Package topology holds the cluster's data model and every decision made
// about it, as pure functions: no I/O, no clock read, no goroutines. Callers
// pass the time and the observed health in; results are new values.
package topology

import (
	"fmt"
	"slices"
	"time"
)

// Role is an instance's role, with Greenplum's letters.
type Role string

const (
	RolePrimary Role = "p"
	RoleMirror  Role = "m"
)

// Mode says whether a pair is synchronized: the mirror has every
// acknowledged commit because the primary waits for it.
type Mode string

const (
	ModeSynced    Mode = "s"
	ModeNotSynced Mode = "n"
)

// Status is the recorded status of an instance (a fact of the topology,
// not a guess from one probe).
type Status string

const (
	StatusUp   Status = "u"
	StatusDown Status = "d"
)

// CoordinatorContent is the content id of the coordinator, as in Greenplum.
const CoordinatorContent = -1

// Segment is one PostgreSQL instance, the columns of Greenplum's
// gp_segment_configuration.
type Segment struct {
	DBID          int    `json:"dbid"`
	Content       int    `json:"content"`
	Role          Role   `json:"role"`
	PreferredRole Role   `json:"preferred_role"`
	Mode          Mode   `json:"mode"`
	Status        Status `json:"status"`
	Port          int    `json:"port"`
	Hostname      string `json:"hostname"`
	Address       string `json:"address"`
	DataDir       string `json:"datadir"`
}

// String names the instance the way log lines and errors do.
func (s Segment) String() string {
	return fmt.Sprintf("dbid %d (content %d, %s:%d %s)", s.DBID, s.Content, s.Hostname, s.Port, s.DataDir)
}

// AppName is the application_name the mirror with this dbid streams
// under: the name its primary's synchronous_standby_names and
// pg_stat_replication know it by. It lives here, beside the dbid it is
// derived from, so the supervisor that configures it, the agents that
// vouch for sync by it and the CLI that reports lag by it share one name.
func AppName(dbid int) string { return fmt.Sprintf("gpdbid%d", dbid) }

// CoordinatorAppName is the application_name of the coordinator's
// postgres_fdw connections to the segments: the catalog sets it on every
// foreign server, and fencing a primary ends the sessions that carry it,
// so a coordinator session never goes on reading from a fenced primary
// over a connection cached before the fence.
const CoordinatorAppName = "gpagent_coordinator"

// HistoryEntry is one row of gp_configuration_history.
type HistoryEntry struct {
	Time time.Time `json:"time"`
	DBID int       `json:"dbid"`
	Desc string    `json:"desc"`
}

// MirrorDefaults is where mirrors go when the operator adds them without an
// explicit file: the mirror half of the cluster spec, kept from init.
type MirrorDefaults struct {
	PortBase  int      `json:"port_base,omitempty"`
	DataDirs  []string `json:"datadirs,omitempty"`
	Placement string   `json:"placement,omitempty"` // "group" or "spread"
}

// Topology is the whole cluster state kept in Raft. Values are treated as
// immutable: every change builds a new Topology (see Clone).
type Topology struct {
	ClusterID     string         `json:"cluster_id,omitempty"`
	ConfigVersion uint64         `json:"config_version"`
	Segments      []Segment      `json:"segments"`
	History       []HistoryEntry `json:"history"`
	SegPrefix     string         `json:"seg_prefix,omitempty"`
	// Databases: the coordinator's databases that hold the gp catalog
	// (from the spec's coordinator.databases); empty means [postgres].
	Databases []string       `json:"databases,omitempty"`
	Mirrors   MirrorDefaults `json:"mirrors"`
	// Paused stops automatic failover (gpagent pause).
	Paused bool `json:"paused,omitempty"`
	// Pending lists the dbids that are placed but not yet created (by init
	// or addmirrors). Only a pending instance may be created from nothing:
	// an instance that was once up and is now down is never silently
	// re-created (safety rule 7).
	Pending []int `json:"pending,omitempty"`
	// Rejoin lists the dbids of mirrors whose data is a prefix of their
	// content's primary's (a primary shut down cleanly by a switchover):
	// they start as standbys of the acting primary without a copy.
	Rejoin []int `json:"rejoin,omitempty"`
	// Switchovers are planned role swaps in progress, one per content.
	Switchovers []Switchover `json:"switchovers,omitempty"`
	// Recoveries in progress or queued (gprecoverseg), RecoveryParallel
	// of them at once; RecoveryJob numbers the recover commands.
	Recoveries       []Recovery `json:"recoveries,omitempty"`
	RecoveryParallel int        `json:"recovery_parallel,omitempty"`
	RecoveryJob      int        `json:"recovery_job,omitempty"`
	// NoAutoRecover lists instances whose automatic recovery failed:
	// auto_recover leaves them to the operator until they are up again.
	NoAutoRecover []int `json:"no_auto_recover,omitempty"`
}

// Switchover is a planned, lossless swap of the roles of one in-sync pair:
// From (the primary) shuts down cleanly, To (its mirror) replays up to its
// shutdown checkpoint and is promoted, From follows as mirror.
type Switchover struct {
	Content int `json:"content"`
	From    int `json:"from"`
	To      int `json:"to"`
	// Version: the config version that began it. An agent that reports
	// against an older one does not know its primary is stopping on
	// purpose, so its "not running" is no proof of a crash.
	Version uint64 `json:"version,omitempty"`
}

// IsRejoining reports whether dbid is to start as a standby of its
// content's primary from the data it has.
func (t *Topology) IsRejoining(dbid int) bool { return slices.Contains(t.Rejoin, dbid) }

// SwitchoverOf returns the switchover in progress for content, if any.
func (t *Topology) SwitchoverOf(content int) (Switchover, bool) {
	for _, sw := range t.Switchovers {
		if sw.Content == content {
			return sw, true
		}
	}
	return Switchover{}, false
}

// IsPending reports whether dbid is placed but not yet created.
func (t *Topology) IsPending(dbid int) bool { return slices.Contains(t.Pending, dbid) }

// Initialized reports whether init has run.
func (t *Topology) Initialized() bool { return t != nil && len(t.Segments) > 0 }

// Clone returns a deep copy, so a decision can build on t without
// touching the value other goroutines read.
func (t *Topology) Clone() *Topology {
	if t == nil {
		return &Topology{}
	}
	c := *t
	c.Segments = append([]Segment(nil), t.Segments...)
	c.History = append([]HistoryEntry(nil), t.History...)
	c.Mirrors.DataDirs = append([]string(nil), t.Mirrors.DataDirs...)
	c.Pending = append([]int(nil), t.Pending...)
	c.Rejoin = append([]int(nil), t.Rejoin...)
	c.Switchovers = append([]Switchover(nil), t.Switchovers...)
	c.Recoveries = append([]Recovery(nil), t.Recoveries...)
	c.NoAutoRecover = append([]int(nil), t.NoAutoRecover...)
	c.Databases = append([]string(nil), t.Databases...)
	return &c
}

// Segment returns the instance with the given dbid.
func (t *Topology) Segment(dbid int) (Segment, bool) {
	for _, s := range t.Segments {
		if s.DBID == dbid {
			return s, true
		}
	}
	return Segment{}, false
}

// Content returns the instances of one content, primary first.
func (t *Topology) Content(content int) []Segment {
	var out []Segment
	for _, s := range t.Segments {
		if s.Content == content {
			if s.Role == RolePrimary {
				out = append([]Segment{s}, out...)
			} else {
				out = append(out, s)
			}
		}
	}
	return out
}

// Primary returns the instance of content recorded with role p.
func (t *Topology) Primary(content int) (Segment, bool) {
	for _, s := range t.Segments {
		if s.Content == content && s.Role == RolePrimary {
			return s, true
		}
	}
	return Segment{}, false
}

// Mirror returns the instance of content recorded with role m.
func (t *Topology) Mirror(content int) (Segment, bool) {
	for _, s := range t.Segments {
		if s.Content == content && s.Role == RoleMirror {
			return s, true
		}
	}
	return Segment{}, false
}

// Contents returns the content ids in ascending order, coordinator first.
func (t *Topology) Contents() []int {
	seen := map[int]bool{}
	var out []int
	for _, s := range t.Segments {
		if !seen[s.Content] {
			seen[s.Content] = true
			out = append(out, s.Content)
		}
	}
	slices.Sort(out)
	return out
}

// OnHost returns the instances placed on the named host.
func (t *Topology) OnHost(host string) []Segment {
	var out []Segment
	for _, s := range t.Segments {
		if s.Hostname == host {
			out = append(out, s)
		}
	}
	return out
}

// MaxDBID returns the largest dbid in use (0 when empty).
func (t *Topology) MaxDBID() int {
	m := 0
	for _, s := range t.Segments {
		if s.DBID > m {
			m = s.DBID
		}
	}
	return m
}

// CatalogDatabases are the coordinator's databases that hold the gp
// catalog schema: the spec's list, or postgres.
func (t *Topology) CatalogDatabases() []string {
	if len(t.Databases) == 0 {
		return []string{"postgres"}
	}
	return t.Databases
}
