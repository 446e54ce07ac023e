package agent

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"

	"github.com/gpagent/gpagent/supervisor"
	"github.com/gpagent/gpagent/topology"
)

// Health routes answer load balancers and service managers: 200 means
// yes, 503 no, with a JSON body saying why. They answer GET, HEAD and
// OPTIONS alike, since HAProxy's httpchk sends OPTIONS unless told
// otherwise.

// healthRoute registers h for GET (which also serves HEAD) and OPTIONS.
func healthRoute(mux *guardedMux, path string, h http.HandlerFunc) {
	wrapped := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", "GET, HEAD, OPTIONS")
		h(w, r)
	}
	mux.open("GET "+path, wrapped)
	mux.open("OPTIONS "+path, wrapped)
}

func writeHealth(w http.ResponseWriter, ok bool, body map[string]any) {
	w.Header().Set("Content-Type", "application/json")
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(body)
}

// getLive answers /v1/health/live: the process serves its API. A service
// manager restarts an agent that stops answering it.
func (a *Agent) getLive(w http.ResponseWriter, r *http.Request) {
	writeHealth(w, true, map[string]any{"live": true, "agent": a.cfg.Name})
}

// getReady answers /v1/health/ready: this agent has applied the topology
// the leader last acknowledged and holds its lease, so what it serves
// and does follows the committed topology.
func (a *Agent) getReady(w http.ResponseWriter, r *http.Request) {
	t := a.node.Topology()
	why := ""
	switch {
	case !a.exec.caughtUpWith(t):
		why = "this agent has not applied the leader's topology yet"
	case !a.lease.valid(a.clock.Now(), a.cfg.Lease):
		why = "this agent has not reached the leader within its lease"
	}
	if why != "" {
		writeHealth(w, false, map[string]any{"ready": false, "reason": why})
		return
	}
	writeHealth(w, true, map[string]any{"ready": true, "config_version": t.ConfigVersion})
}

// getMirrorHealth answers /v1/health/mirror/{content}[?lag=BYTES]: 200 on
// the host of an up mirror of the content that streams from its primary
// and whose replay is at most lag bytes behind the primary's WAL (as
// Patroni's /replica?lag=). Read-only load can be sent there.
func (a *Agent) getMirrorHealth(w http.ResponseWriter, r *http.Request) {
	content, err := strconv.Atoi(r.PathValue("content"))
	if err != nil {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(map[string]any{"code": "invalid", "error": fmt.Sprintf("content %q is not a number", r.PathValue("content"))})
		return
	}
	maxLag := int64(-1)
	if s := r.URL.Query().Get("lag"); s != "" {
		if maxLag, err = strconv.ParseInt(s, 10, 64); err != nil || maxLag < 0 {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_ = json.NewEncoder(w).Encode(map[string]any{"code": "invalid", "error": fmt.Sprintf("lag %q is not a number of bytes", s)})
			return
		}
	}
	if !a.lease.valid(a.clock.Now(), a.cfg.Lease) {
		writeHealth(w, false, map[string]any{"mirror": false, "reason": "this agent has no quorum: its view may be stale"})
		return
	}
	health := func(dbid int) *supervisor.Health {
		st := a.exec.state(dbid)
		a.exec.mu.Lock()
		defer a.exec.mu.Unlock()
		return st.health
	}
	v := mirrorVerdict(a.node.Topology(), a.cfg.Name, content, health, maxLag)
	if !v.ok {
		writeHealth(w, false, map[string]any{"mirror": false, "reason": v.why})
		return
	}
	writeHealth(w, true, map[string]any{"mirror": true, "content": content, "dbid": v.dbid, "lag_bytes": v.lag})
}

type mirrorAnswer struct {
	ok   bool
	dbid int
	lag  uint64
	why  string
}

// mirrorVerdict decides the mirror health of content on host from the
// committed topology and the instances' last probes; maxLag < 0 means
// any lag. The lag is how far the mirror's replay is behind the end of
// its primary's WAL as last reported to it.
func mirrorVerdict(t *topology.Topology, host string, content int, health func(dbid int) *supervisor.Health, maxLag int64) mirrorAnswer {
	why := fmt.Sprintf("no mirror of content %d is on %s", content, host)
	for _, s := range t.Content(content) {
		if s.Hostname != host || s.Role != topology.RoleMirror {
			continue
		}
		h := health(s.DBID)
		switch {
		case s.Status != topology.StatusUp:
			why = fmt.Sprintf("mirror dbid %d of content %d is down", s.DBID, content)
			continue
		case h == nil || !h.InRecovery:
			why = fmt.Sprintf("dbid %d does not answer as a mirror", s.DBID)
			continue
		case h.Receiver == nil || h.Receiver.Status != "streaming":
			why = fmt.Sprintf("dbid %d does not stream from its primary", s.DBID)
			continue
		}
		lag := replayLag(h)
		if maxLag >= 0 && lag > uint64(maxLag) {
			why = fmt.Sprintf("dbid %d is %d bytes behind its primary (more than %d)", s.DBID, lag, maxLag)
			continue
		}
		return mirrorAnswer{ok: true, dbid: s.DBID, lag: lag}
	}
	return mirrorAnswer{why: why}
}

// replayLag is how far a streaming mirror's replay (h.CurrentLSN) is
// behind the end of its primary's WAL as last reported to it, or behind
// what it received when that is further.
func replayLag(h *supervisor.Health) uint64 {
	end := max(h.Receiver.LatestEndLSN, h.Receiver.FlushedLSN)
	if end > h.CurrentLSN {
		return end - h.CurrentLSN
	}
	return 0
}
