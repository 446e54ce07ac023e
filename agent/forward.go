package agent

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"

	"github.com/gpagent/gpagent/api"
)

// forwardedHeader marks a request an agent forwarded to the leader: the
// leader answers it itself, and a request forwarded to an agent that has
// meanwhile lost leadership is refused rather than forwarded again.
const forwardedHeader = "X-Gpagent-Forwarded-By"

// leaderOnly serves a request on the leader, and forwards it there from
// any other agent (rqlite's way), so every CLI command works against any
// agent of the cluster.
func (a *Agent) leaderOnly(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if a.node.IsLeader() || r.Header.Get(forwardedHeader) != "" {
			// A forwarded request is answered only by the leader: the
			// sender may still name an agent that has lost leadership,
			// or one just restarted whose log is not replayed yet (it
			// would answer "no cluster").
			if !a.waitLeaderReady(r.Context()) {
				writeError(w, api.Errorf(api.CodeNotLeader, "agent %s: not the Raft leader (or still applying its log); try again", a.cfg.Name))
				return
			}
			h(w, r)
			return
		}
		addr, ok := a.waitLeaderAPI(r.Context())
		if !ok && r.Method == http.MethodGet {
			// Reads fall back to this agent's copy, marked stale.
			h(w, r)
			return
		}
		if !ok {
			writeError(w, api.Errorf(api.CodeNotLeader, "agent %s: no Raft leader is known (no quorum?)", a.cfg.Name))
			return
		}
		target := &url.URL{Scheme: "http", Host: addr}
		if a.tls != nil {
			target.Scheme = "https"
		}
		transport := a.forwardTransport()
		proxy := &httputil.ReverseProxy{
			Transport: transport,
			Rewrite: func(pr *httputil.ProxyRequest) {
				pr.SetURL(target)
				pr.Out.Header.Set(forwardedHeader, a.cfg.Name)
				// The leader authenticates this agent (its certificate,
				// or the token) and takes the caller from here.
				pr.Out.Header.Del(principalHeader)
				if p := principalOf(r.Context()); p.kind != kindNone {
					pr.Out.Header.Set(principalHeader, p.String())
				}
				if a.cfg.Token != "" {
					pr.Out.Header.Set(api.TokenHeader, "Bearer "+a.cfg.Token)
				}
			},
			ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
				writeError(w, api.Errorf(api.CodeNotLeader, "agent %s: forward to the leader at %s: %v", a.cfg.Name, addr, err))
			},
		}
		proxy.ServeHTTP(w, r)
	}
}

// forwardTransport is the one transport forwarded requests share, so
// their connections to the leader are reused rather than left idle; it
// dials through the agent's Network.
func (a *Agent) forwardTransport() http.RoundTripper {
	a.peersMu.Lock()
	defer a.peersMu.Unlock()
	if a.fwd == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		if a.tls != nil {
			// A copy: each transport writes its config's NextProtos on
			// first use (api.NewClientDialer copies its own too).
			tr.TLSClientConfig = a.tls.client.Clone()
		}
		tr.DialContext = a.net.DialContext
		a.fwd = tr
	}
	return a.fwd
}

// waitLeaderReady gives a new leader a moment to pass its term's
// barrier; false if it has not (or lost leadership) meanwhile.
func (a *Agent) waitLeaderReady(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for !a.lead.ready.Load() {
		if !a.node.IsLeader() {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(20 * time.Millisecond):
		}
	}
	return true
}

// waitLeaderAPI gives an election in progress a moment to finish.
func (a *Agent) waitLeaderAPI(ctx context.Context) (string, bool) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for {
		if a.node.IsLeader() {
			return "", false // became leader meanwhile: caller should serve; rare, refuse cleanly
		}
		if addr, ok := a.leaderAPI(); ok {
			return addr, true
		}
		select {
		case <-ctx.Done():
			return "", false
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func writeError(w http.ResponseWriter, e *api.Error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.Code.HTTPStatus())
	_ = json.NewEncoder(w).Encode(e)
}
