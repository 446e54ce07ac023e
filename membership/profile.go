package membership

import (
	"time"

	"github.com/hashicorp/memberlist"
)

// The LAN profile. memberlist's DefaultLANConfig probes once a second and
// keeps a silent host suspect for 4 probe intervals (up to 6x that without
// confirmations), so a lost host is declared dead after 5 to 25 s. An HA
// agent wants the primaries of a lost host failed over sooner, and a LAN's
// round trip is far below 250 ms, so the probe runs twice as often and a
// suspect is given less time to refute. Raising these trades detection time
// for fewer false suspicions on a congested or overloaded network
// (memberlist's awareness still slows probing down, up to 8x, on a node
// that notices it is itself missing its deadlines).
const (
	// DefaultProbeInterval: every member probes one other member, round
	// robin, this often; a probe that gets no direct, indirect or TCP
	// answer within the interval makes the prober suspect the target.
	DefaultProbeInterval = 500 * time.Millisecond
	// DefaultProbeTimeout: how long the direct UDP ping waits before the
	// indirect pings (through DefaultIndirectChecks other members) start.
	DefaultProbeTimeout = 250 * time.Millisecond
	// DefaultIndirectChecks is memberlist's LAN value: 3 members are asked
	// to ping a target that did not answer us, so one bad link does not
	// make a host suspect.
	DefaultIndirectChecks = 3
	// DefaultSuspicionMult: a suspect is declared dead after
	// DefaultSuspicionMult x ProbeInterval x max(1, log10(N)) once
	// DefaultSuspicionMult-2 other members have confirmed the suspicion.
	DefaultSuspicionMult = 3
	// DefaultSuspicionMaxTimeoutMult bounds the wait when no other member
	// confirms (a prober with a bad link of its own): at most this many
	// times the suspicion timeout.
	DefaultSuspicionMaxTimeoutMult = 4
	// DefaultGossipInterval: queued broadcasts (memberlist's own and health
	// reports) go to DefaultGossipNodes random members this often, besides
	// riding on probes (every DefaultProbeInterval). The gossip timer fires
	// even with nothing queued: at 200 ms it was a third of an idle agent's
	// wakeups; suspicions still reach the others on the next probe or
	// gossip, well within DefaultSuspicionTimeout.
	DefaultGossipInterval = 500 * time.Millisecond
	DefaultGossipNodes    = 3
	// DefaultTCPTimeout bounds a join's or a push-pull's dial and each of
	// its reads and writes: a join to a peer that never answers gives up
	// after about twice this.
	DefaultTCPTimeout = 2 * time.Second
	// DefaultPushPullInterval: full state exchange with one random member,
	// which repairs whatever gossip lost (memberlist's LAN value is 30 s).
	DefaultPushPullInterval = 15 * time.Second
	// DefaultGossipToTheDeadTime: a dead member still gets gossip this long,
	// so that one wrongly declared dead hears it and refutes.
	DefaultGossipToTheDeadTime = 15 * time.Second

	// DefaultSuspicionTimeout is how long a suspect member, confirmed by
	// another, stays suspect before it is declared dead, in a cluster of
	// fewer than 10 hosts. memberlist scales it by log10(N) above that
	// (x2 at 100 hosts). In a 2-host cluster nobody can confirm, and
	// memberlist uses this value directly.
	DefaultSuspicionTimeout = DefaultSuspicionMult * DefaultProbeInterval // 1.5 s
	// DefaultSuspicionMaxTimeout is the suspect time when no confirmation
	// arrives.
	DefaultSuspicionMaxTimeout = DefaultSuspicionMaxTimeoutMult * DefaultSuspicionTimeout // 6 s

	// DefaultSuspectAfter is when a host that stopped answering is usually
	// suspect: each survivor probes the members in a shuffled order, so
	// some survivor reaches it within about one interval, and that probe
	// fails at the end of the next.
	DefaultSuspectAfter = 2 * DefaultProbeInterval // 1 s
	// DefaultDeadAfter is when such a host is usually declared dead by
	// every survivor: 2.5 s in a cluster of fewer than 10 hosts (the dead
	// message then spreads in a few gossip intervals). Without a
	// confirmation it is DefaultSuspectAfter+DefaultSuspicionMaxTimeout,
	// 7 s. The tests log the times they measure.
	DefaultDeadAfter = DefaultSuspectAfter + DefaultSuspicionTimeout

	// DefaultJoinBackoffMax caps the wait between Join attempts.
	DefaultJoinBackoffMax = 2 * time.Second
	// joinBackoffMin is the wait after the first failed attempt.
	joinBackoffMin = 100 * time.Millisecond
	// metaUpdateTimeout bounds UpdateMeta's wait for its broadcast.
	metaUpdateTimeout = 2 * time.Second
)

// lanProfile is memberlist's LAN configuration with the timings above.
func lanProfile() *memberlist.Config {
	c := memberlist.DefaultLANConfig()
	c.ProbeInterval = DefaultProbeInterval
	c.ProbeTimeout = DefaultProbeTimeout
	c.IndirectChecks = DefaultIndirectChecks
	c.SuspicionMult = DefaultSuspicionMult
	c.SuspicionMaxTimeoutMult = DefaultSuspicionMaxTimeoutMult
	c.GossipInterval = DefaultGossipInterval
	c.GossipNodes = DefaultGossipNodes
	c.TCPTimeout = DefaultTCPTimeout
	c.PushPullInterval = DefaultPushPullInterval
	c.GossipToTheDeadTime = DefaultGossipToTheDeadTime
	// Pings and health reports are a few hundred bytes on a LAN: LZW
	// (a fresh writer per message) costs more CPU than it saves bytes.
	c.EnableCompression = false
	return c
}
