package agent

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/gpagent/gpagent/api"
	"github.com/gpagent/gpagent/topology"
)

// getPrimaryHealth answers GET /v1/health/primary/{content}: 200 only on
// the host of the content's acting primary, and only while that instance
// answers as a writable primary. Load balancers (HAProxy's httpchk) send
// clients to the one host that answers 200.
func (a *Agent) getPrimaryHealth(w http.ResponseWriter, r *http.Request) {
	content, err := strconv.Atoi(r.PathValue("content"))
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, "{\"code\":%q,\"error\":\"content %q is not a number\"}\n", api.CodeInvalid, r.PathValue("content"))
		return
	}
	ok, why := a.isLocalActingPrimary(content)
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "{\"primary\":false,\"reason\":%q}\n", why)
		return
	}
	fmt.Fprintf(w, "{\"primary\":true,\"content\":%d}\n", content)
}

func (a *Agent) isLocalActingPrimary(content int) (bool, string) {
	t := a.node.Topology()
	p, ok := t.Primary(content)
	switch {
	case !a.lease.valid(a.clock.Now(), a.cfg.Lease):
		return false, "this agent has no quorum: its primaries are fenced"
	case !ok:
		return false, fmt.Sprintf("content %d has no primary", content)
	case p.Hostname != a.cfg.Name:
		return false, fmt.Sprintf("the primary of content %d is on %s", content, p.Hostname)
	case p.Status != topology.StatusUp:
		return false, fmt.Sprintf("the primary of content %d is down", content)
	}
	st := a.exec.state(p.DBID)
	a.exec.mu.Lock()
	h := st.health
	a.exec.mu.Unlock()
	if h == nil || h.InRecovery {
		return false, fmt.Sprintf("dbid %d does not answer as a primary", p.DBID)
	}
	return true, ""
}

// getConnInfo answers GET /v1/conninfo/{content}: the hosts of a content,
// acting primary first, for a libpq multi-host connection string.
func (a *Agent) getConnInfo(r *http.Request) (any, error) {
	content, err := strconv.Atoi(r.PathValue("content"))
	if err != nil {
		return nil, api.Errorf(api.CodeInvalid, "content %q is not a number", r.PathValue("content"))
	}
	t := a.node.Topology()
	segs := t.Content(content)
	if len(segs) == 0 {
		return nil, api.Errorf(api.CodeInvalid, "content %d: no such content", content)
	}
	ci := &api.ConnInfo{Content: content, User: a.cfg.SuperUser, DBName: "postgres"}
	for _, s := range segs {
		ci.Hosts = append(ci.Hosts, api.HostPort{Address: s.Address, Port: s.Port})
	}
	return ci, nil
}
