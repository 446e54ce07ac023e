package consensus

import (
	"sync/atomic"

	"github.com/hashicorp/raft"
)

// voteGuard keeps a member from voting before it is a voter of the
// configuration it holds. hashicorp/raft grants a vote from a member with
// an empty configuration to any candidate, and a candidate counts the
// answer of whatever process listens at a voter's address: an agent whose
// data dir was wiped, back at its old address with an empty log, would
// then elect a stale candidate in the place of the member that had
// acknowledged entries, and a committed entry could be lost. With the
// guard, a member votes only once its own server id is a voter in its
// latest configuration: a wiped agent (a new id) votes only after the
// leader has added it and it has received that configuration, with the
// log before it.
type voteGuard struct {
	// Embedded, so raft sees every optional interface of the transport
	// (WithClose: its shutdown closes it).
	*raft.NetworkTransport
	self   raft.ServerID
	addr   raft.ServerAddress
	config atomic.Pointer[func() raft.Configuration]
	out    chan raft.RPC
	stop   chan struct{}
}

// guardVotes wraps trans; the consumer loop runs until stop is closed.
func guardVotes(trans *raft.NetworkTransport, self raft.ServerID, stop chan struct{}) *voteGuard {
	g := &voteGuard{NetworkTransport: trans, self: self, addr: trans.LocalAddr(), out: make(chan raft.RPC), stop: stop}
	go g.loop()
	return g
}

// setConfig gives the guard the member's latest configuration.
func (g *voteGuard) setConfig(f func() raft.Configuration) { g.config.Store(&f) }

// Consumer is raft's channel of incoming RPCs, less the refused votes.
func (g *voteGuard) Consumer() <-chan raft.RPC { return g.out }

// mayVote reports whether this member is a voter of its configuration.
func (g *voteGuard) mayVote() bool {
	f := g.config.Load()
	if f == nil {
		return false
	}
	for _, s := range (*f)().Servers {
		if s.ID == g.self {
			return s.Suffrage == raft.Voter
		}
	}
	return false
}

func (g *voteGuard) loop() {
	in := g.NetworkTransport.Consumer()
	for {
		var rpc raft.RPC
		select {
		case <-g.stop:
			return
		case rpc = <-in:
		}
		if g.refuse(rpc) {
			continue
		}
		select {
		case <-g.stop:
			return
		case g.out <- rpc:
		}
	}
}

// refuse answers a vote or pre-vote request itself, with a refusal, when
// this member may not vote. The answer carries the candidate's own term,
// so it neither deposes the candidate nor counts for it.
func (g *voteGuard) refuse(rpc raft.RPC) bool {
	hdr := raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(g.self), Addr: []byte(g.addr)}
	switch req := rpc.Command.(type) {
	case *raft.RequestVoteRequest:
		if g.mayVote() {
			return false
		}
		rpc.Respond(&raft.RequestVoteResponse{RPCHeader: hdr, Term: req.Term, Granted: false}, nil)
		return true
	case *raft.RequestPreVoteRequest:
		if g.mayVote() {
			return false
		}
		rpc.Respond(&raft.RequestPreVoteResponse{RPCHeader: hdr, Term: req.Term, Granted: false}, nil)
		return true
	}
	return false
}
