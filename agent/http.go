package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/pprof"
	"sync"
	"time"

	"github.com/gpagent/gpagent/api"
	"github.com/gpagent/gpagent/consensus"
	"github.com/gpagent/gpagent/topology"
)

// routes is the one route table of the API. Each route says who may call
// it (auth.go): reads are open, the routes agents call on each other need
// an agent, every other change an operator.
func (a *Agent) routes() *guardedMux {
	mux := newGuardedMux(a)
	// Served by the leader: leaderOnly forwards them there from any other
	// agent, and answers a GET from this agent's own copy while no leader
	// is known (state then says it may be stale). The guard runs first,
	// on the agent the caller reached; the forward carries the principal.
	read := func(pattern string, h handlerFunc) { mux.open(pattern, a.leaderOnly(a.handle(h))) }
	change := func(pattern string, h handlerFunc) { mux.operator(pattern, a.leaderOnly(a.handle(h))) }
	read("GET /v1/state", a.getState)
	read("GET /v1/history", a.getHistory)
	change("POST /v1/init", a.postInit)
	change("POST /v1/addmirrors/plan", a.postMirrorPlan)
	change("POST /v1/addmirrors", a.postAddMirrors)
	mux.agent("POST /v1/report", a.leaderOnly(a.handle(a.postReport)))
	// The blocking query of client agents: any server answers from its
	// own topology (the client prefers the leader's).
	mux.agent("GET /v1/topology", a.getTopology)
	change("POST /v1/pause", a.postPause)
	change("POST /v1/resume", a.postResume)
	change("POST /v1/switchover", a.postSwitchover)
	change("POST /v1/initstandby", a.postInitStandby)
	change("POST /v1/recover/plan", a.postRecoverPlan)
	change("POST /v1/recover", a.postRecover)
	change("POST /v1/rebalance", a.postRebalance)
	read("GET /v1/conninfo/{content}", a.getConnInfo)
	// Creates tables on every content: an operator's change.
	change("POST /v1/tables", a.postTables)
	read("GET /v1/tables", a.getTables)
	// Served by every agent about itself.
	mux.open("GET /v1/members", a.handle(a.getMembers))
	mux.operator("POST /v1/reload", a.handle(a.postReload))
	mux.open("GET /v1/keyring", a.handle(a.getKeyring))
	mux.operator("POST /v1/keyring", a.handle(a.postKeyring))
	mux.open("GET /v1/local/keyring", a.handle(a.getLocalKeyring))
	mux.agent("POST /v1/local/keyring", a.handle(a.postLocalKeyring))
	mux.agent("POST /v1/local/preflight", a.handle(a.postLocalPreflight))
	mux.open("GET /metrics", a.metricsHandler().ServeHTTP)
	healthRoute(mux, "/v1/health/live", a.getLive)
	healthRoute(mux, "/v1/health/ready", a.getReady)
	healthRoute(mux, "/v1/health/primary/{content}", a.getPrimaryHealth)
	healthRoute(mux, "/v1/health/mirror/{content}", a.getMirrorHealth)
	// The data files give away every row and the password verifiers:
	// agents only, though the listing is a GET.
	mux.agent("GET /v1/local/files/{dbid}", a.dataAccess(a.handle(a.getDataFiles)))
	mux.agent("POST /v1/local/files/{dbid}/read", writeDeadline(defaultServerTimeouts.dataWrite, a.dataAccess(a.postReadDataFiles)))
	if a.cfg.EnableDebug {
		// Profiles and traces run as long as ?seconds= asks, and show
		// the process's internals: operators only.
		mux.operator("/debug/pprof/", pprof.Index)
		mux.operator("/debug/pprof/cmdline", pprof.Cmdline)
		mux.operator("/debug/pprof/profile", writeDeadline(0, pprof.Profile))
		mux.operator("/debug/pprof/symbol", pprof.Symbol)
		mux.operator("/debug/pprof/trace", writeDeadline(0, pprof.Trace))
	}
	return mux
}

// handlerFunc returns the value to encode as JSON, or an error.
type handlerFunc func(r *http.Request) (any, error)

func (a *Agent) handle(h handlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := h(r)
		w.Header().Set("Content-Type", "application/json")
		if err != nil {
			e := toAPIError(err)
			if e.Code == api.CodeInternal {
				a.log.Error("api request failed", "path", r.URL.Path, "err", err)
			}
			w.WriteHeader(e.Code.HTTPStatus())
			_ = json.NewEncoder(w).Encode(e)
			return
		}
		if raw, ok := v.(json.RawMessage); ok {
			// Encoded by this agent already (stateCache): the encoder
			// would scan and compact its megabytes again on every answer.
			_, _ = w.Write(raw)
			_, _ = w.Write([]byte{'\n'})
			return
		}
		_ = json.NewEncoder(w).Encode(v)
	}
}

// toAPIError maps typed errors of every layer to a stable code, with
// errors.Is, never by their text.
func toAPIError(err error) *api.Error {
	var e *api.Error
	if errors.As(err, &e) {
		return e
	}
	code := api.CodeInternal
	switch {
	case errors.Is(err, topology.ErrStale):
		code = api.CodeStale
	case errors.Is(err, topology.ErrInvalid):
		code = api.CodeInvalid
	case errors.Is(err, consensus.ErrNotLeader):
		code = api.CodeNotLeader
	case errors.Is(err, consensus.ErrNeedsNewerCluster):
		code = api.CodeConflict
	}
	return &api.Error{Code: code, Message: err.Error()}
}

// decode reads a JSON body strictly: unknown fields are refused.
func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, 8<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return api.Errorf(api.CodeInvalid, "request body: %v", err)
	}
	return nil
}

func (a *Agent) getState(r *http.Request) (any, error) {
	t := a.node.Topology()
	s := &api.State{
		ConfigVersion: t.ConfigVersion,
		Segments:      t.Segments,
		ClusterID:     t.ClusterID,
		Paused:        t.Paused,
		Pending:       t.Pending,
		Rejoin:        t.Rejoin,
		Switchovers:   t.Switchovers,
		Recoveries:    t.Recoveries,
	}
	if s.Segments == nil {
		s.Segments = []topology.Segment{}
	}
	s.Leader, _ = a.node.Leader()
	// Only a leader that has just confirmed it still leads can vouch the
	// topology is the committed one.
	if a.node.VerifyLeader() != nil {
		s.Stale = true
	} else if r.URL.Query().Get("reports") != "false" {
		s.Instances = a.lead.instances()
	}
	if s.Instances != nil {
		return s, nil
	}
	// Without reports the answer is the topology's alone: encoded once
	// per topology, leader and staleness (16,000 segments are megabytes
	// of JSON, and every `gpagent state` asked for them anew), and
	// indented once if asked (gpagent state --json prints it so).
	return a.stateCache.encode(t, s, r.URL.Query().Get("indent") == "true")
}

// stateCache is the last state answer without reports, encoded.
type stateCache struct {
	mu     sync.Mutex
	t      *topology.Topology
	leader string
	stale  bool
	body   json.RawMessage
	// indented: body as api.IndentState indents it, once asked.
	indented json.RawMessage
}

func (c *stateCache) encode(t *topology.Topology, s *api.State, indent bool) (json.RawMessage, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.body == nil || c.t != t || c.leader != s.Leader || c.stale != s.Stale {
		b, err := json.Marshal(s)
		if err != nil {
			return nil, fmt.Errorf("encode state: %w", err)
		}
		c.t, c.leader, c.stale, c.body, c.indented = t, s.Leader, s.Stale, b, nil
	}
	if !indent {
		return c.body, nil
	}
	if c.indented == nil {
		b, err := api.IndentState(c.body)
		if err != nil {
			return nil, fmt.Errorf("indent state: %w", err)
		}
		c.indented = b
	}
	return c.indented, nil
}

func (a *Agent) getHistory(r *http.Request) (any, error) {
	h := a.node.Topology().History
	if h == nil {
		h = []topology.HistoryEntry{}
	}
	return h, nil
}

func (a *Agent) postReport(r *http.Request) (any, error) {
	var rep api.Report
	if err := decode(r, &rep); err != nil {
		return nil, err
	}
	if !a.node.IsLeader() {
		return nil, api.Errorf(api.CodeNotLeader, "agent %s is not the leader", a.cfg.Name)
	}
	if err := checkReporter(principalOf(r.Context()), rep.Agent); err != nil {
		return nil, err
	}
	if rep.Heartbeat() {
		return a.acceptHeartbeat(rep)
	}
	return a.acceptReport(rep), nil
}

// acceptReport hands an authenticated report to the leader and returns
// its acknowledgement.
func (a *Agent) acceptReport(rep api.Report) *api.ReportAck {
	// The lease version for both sides: the agent renews its lease on
	// this ack only once its reports are made on it, and the leader
	// counts it heard only then (leader.leaseVersion). The view's
	// version tells the agent which view to fetch and act on
	// (leader.ackVersion).
	a.lead.noteAPI(rep.Agent, rep.API, a.clock.Now())
	t := a.node.Topology()
	v, lease := a.lead.ackVersion(rep.Agent, t), a.lead.leaseVersion(rep.Agent, t)
	a.counts.fullReports.Add(1)
	a.lead.acceptFull(rep.Agent, rep.Seq, a.ownInstances(rep.Agent, rep.Instances), lease)
	return &api.ReportAck{ConfigVersion: v, LeaseVersion: lease}
}

// acceptHeartbeat is acceptReport of an authenticated heartbeat, at the
// same version (leader.heartbeat). One naming a full report this leader
// does not hold is answered CodeResend and changes nothing: the agent
// sends the full report at once.
func (a *Agent) acceptHeartbeat(rep api.Report) (*api.ReportAck, error) {
	if len(rep.Instances) > 0 {
		return nil, api.Errorf(api.CodeInvalid, "report of agent %s: a heartbeat (same %d) carries no instances", rep.Agent, rep.Same)
	}
	a.lead.noteAPI(rep.Agent, rep.API, a.clock.Now())
	t := a.node.Topology()
	v, lease := a.lead.ackVersion(rep.Agent, t), a.lead.leaseVersion(rep.Agent, t)
	if !a.lead.heartbeat(rep.Agent, rep, lease) {
		a.counts.resends.Add(1)
		return nil, api.Errorf(api.CodeResend, "heartbeat of agent %s names full report %d, which this leader does not hold: send it in full", rep.Agent, rep.Same)
	}
	a.counts.heartbeats.Add(1)
	return &api.ReportAck{ConfigVersion: v, LeaseVersion: lease}, nil
}

// requireLeader refuses a change unless this agent still leads, confirmed
// by VerifyLeader. leaderOnly has already forwarded the request here from
// any other agent; this catches a leader deposed since, whose topology may
// be old, and answers not_leader so the client retries on the new one.
func (a *Agent) requireLeader(ctx context.Context) error {
	// Right after a start the election may still be running: give it a
	// moment rather than failing the operator's first command.
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_ = a.node.WaitLeader(wctx)
	if err := a.node.VerifyLeader(); err != nil {
		id, _ := a.node.Leader()
		return api.Errorf(api.CodeNotLeader, "agent %s is not the Raft leader (leader: %q): %v", a.cfg.Name, id, err)
	}
	return nil
}

func (a *Agent) checkHosts(segs []topology.Segment) error {
	for _, s := range segs {
		if !a.hostKnown(s.Hostname) {
			return api.Errorf(api.CodeInvalid, "host %q (dbid %d): no gpagent agent of that name is in the cluster (known: %v)", s.Hostname, s.DBID, a.knownHosts())
		}
	}
	return nil
}

// preflight checks, before anything is committed, that every instance can
// be created where it is placed.
func (a *Agent) preflight(clusterID string, segs []topology.Segment) error {
	if err := a.checkHosts(segs); err != nil {
		return err
	}
	byHost := map[string][]topology.Segment{}
	for _, s := range segs {
		byHost[s.Hostname] = append(byHost[s.Hostname], s)
	}
	for host, list := range byHost {
		if host == a.cfg.Name {
			if err := a.preflightLocal(clusterID, list); err != nil {
				return err
			}
			continue
		}
		addr, ok := a.memberAPI(host)
		if !ok {
			return api.Errorf(api.CodeUnavailable, "host %s: its agent is not reachable", host)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := a.peerClient(addr).Preflight(ctx, api.PreflightRequest{ClusterID: clusterID, Segments: list})
		cancel()
		if err != nil {
			return err
		}
	}
	return nil
}

func (a *Agent) preflightLocal(clusterID string, segs []topology.Segment) error {
	for _, s := range segs {
		if s.Hostname != a.cfg.Name {
			continue
		}
		if err := a.drv.Preflight(clusterID, localInstance(s)); err != nil {
			return api.Errorf(api.CodeConflict, "dbid %d on %s: %v", s.DBID, s.Hostname, err)
		}
	}
	return nil
}

// postLocalPreflight checks, for the leader, this host's part of a plan.
func (a *Agent) postLocalPreflight(r *http.Request) (any, error) {
	var req api.PreflightRequest
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	return struct{}{}, a.preflightLocal(req.ClusterID, req.Segments)
}

func segmentsEqual(a, b []topology.Segment) bool {
	if len(a) != len(b) {
		return false
	}
	key := func(s topology.Segment) string {
		return fmt.Sprintf("%d|%d|%s|%s|%s|%d|%s", s.DBID, s.Content, s.PreferredRole, s.Hostname, s.Address, s.Port, s.DataDir)
	}
	seen := map[string]bool{}
	for _, s := range a {
		seen[key(s)] = true
	}
	for _, s := range b {
		if !seen[key(s)] {
			return false
		}
	}
	return true
}

// begin starts a change request: it decodes the body strictly, checks
// that this agent leads, and returns the committed topology the request
// is judged against (which must be initialized when needInit).
func (a *Agent) begin(r *http.Request, req any, needInit bool) (*topology.Topology, error) {
	if err := decode(r, req); err != nil {
		return nil, err
	}
	if err := a.requireLeader(r.Context()); err != nil {
		return nil, err
	}
	t := a.node.Topology()
	if needInit && !t.Initialized() {
		return nil, api.Errorf(api.CodeNotInitialized, "no cluster: run gpagent init first")
	}
	return t, nil
}
