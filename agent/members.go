package agent

import (
	"net/http"

	"github.com/gpagent/gpagent/api"
	"github.com/gpagent/gpagent/membership"
)

// getMembers lists every agent this one knows of through gossip, with its
// Raft role (from this agent's copy of the Raft configuration) and the
// instances the topology places on it.
func (a *Agent) getMembers(r *http.Request) (any, error) {
	servers, _ := a.node.Servers()
	// By Raft server id: the member an agent was before its data dir
	// was wiped has its name, not its id.
	role := map[string]string{}
	for _, s := range servers {
		switch {
		case s.Leader:
			role[s.ID] = "leader"
		case s.Voter:
			role[s.ID] = "voter"
		default:
			role[s.ID] = "nonvoter"
		}
	}
	t := a.indexed(a.node.Topology())
	out := &api.Members{}
	out.Leader, _ = a.node.Leader()
	for _, m := range a.mesh.Members() {
		am := api.Member{Name: m.Name, Gossip: m.Addr, Status: string(m.Status), APIAddr: m.Meta.APIAddr,
			RaftAddr: m.Meta.RaftAddr, Version: m.Meta.Version, RaftRole: role[raftID(m)], Instances: []int{}}
		if am.RaftRole == "" {
			am.RaftRole = "none"
			if m.Meta.RaftAddr == "" && m.Status == membership.StatusAlive {
				// server: false: never a Raft member, by design.
				am.RaftRole = "client"
			}
		}
		for _, s := range t.OnHost(m.Name) {
			am.Instances = append(am.Instances, s.DBID)
		}
		out.Members = append(out.Members, am)
	}
	// Clients without gossip (servers in their config), as this leader
	// knows them from their reports; another agent does not know them.
	for _, c := range a.lead.directClients(a.clock.Now()) {
		if _, inGossip := a.mesh.Member(c.name); inGossip {
			continue
		}
		am := api.Member{Name: c.name, Status: string(membership.StatusAlive), APIAddr: c.api, RaftRole: "client", Instances: []int{}}
		for _, s := range t.OnHost(c.name) {
			am.Instances = append(am.Instances, s.DBID)
		}
		out.Members = append(out.Members, am)
	}
	return out, nil
}
