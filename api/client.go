package api

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Client talks to one agent's HTTP API. The agent forwards what only the
// leader can do, so any agent's address will do.
type Client struct {
	base string
	http *http.Client
}

// NewClient returns a client for the agent at addr ("host:port" or a URL).
func NewClient(addr string) *Client { return NewTLSClient(addr, nil) }

// NewTLSClient returns a client that talks HTTPS with cfg (the cluster CA,
// and a client certificate where the agent asks for one); nil cfg means
// plain HTTP unless addr says https://.
func NewTLSClient(addr string, cfg *tls.Config) *Client { return NewClientDialer(addr, cfg, nil) }

// NewClientDialer is NewTLSClient whose connections are opened by dial
// (nil: the default dialer); an agent passes its Network's dialer, so an
// in-process test can cut it off.
func NewClientDialer(addr string, cfg *tls.Config, dial func(ctx context.Context, network, addr string) (net.Conn, error)) *Client {
	base := addr
	if !strings.Contains(base, "://") {
		scheme := "http://"
		if cfg != nil {
			scheme = "https://"
		}
		base = scheme + base
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	// A copy: the transport adds "h2" to its config's NextProtos on first
	// use, a write that races with any other transport sharing cfg (an
	// agent's peer clients and its forwarding proxy share one).
	tr.TLSClientConfig = cfg.Clone()
	if dial != nil {
		tr.DialContext = dial
	}
	// A mirror's copy keeps several requests to the primary's agent in
	// flight; their connections are kept for the next chunk.
	tr.MaxIdleConnsPerHost = 8
	return &Client{base: strings.TrimRight(base, "/"), http: &http.Client{Timeout: 60 * time.Second, Transport: tr}}
}

// TokenHeader carries the cluster token: "Authorization: Bearer <token>".
const TokenHeader = "Authorization"

// WithToken makes every request of c carry token as a bearer credential
// (the cluster's shared secret; "" sends none). It returns c.
func (c *Client) WithToken(token string) *Client {
	if token == "" {
		return c
	}
	c.http.Transport = &tokenTransport{next: c.http.Transport, token: token}
	return c
}

// tokenTransport adds the bearer token to each request it sends.
type tokenTransport struct {
	next  http.RoundTripper
	token string
}

func (t *tokenTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set(TokenHeader, "Bearer "+t.token)
	return t.next.RoundTrip(r)
}

// Addr is the base URL the client talks to.
func (c *Client) Addr() string { return c.base }

// State returns the cluster state, with every instance's latest report.
func (c *Client) State(ctx context.Context) (*State, error) {
	var s State
	return &s, c.do(ctx, http.MethodGet, "/v1/state", nil, &s)
}

// Segments returns the cluster state without the instance reports
// (Instances empty): what gpstate's summary, mapping and JSON show, a
// fraction of the state's size on a large cluster.
func (c *Client) Segments(ctx context.Context) (*State, error) {
	var s State
	return &s, c.do(ctx, http.MethodGet, "/v1/state?reports=false", nil, &s)
}

// SegmentsJSON is Segments as the agent encoded it, not decoded: what
// `gpagent state --json` prints, re-indented, at a thousand hosts'
// megabytes without decoding and encoding them again.
//
// It asks for it indented (IndentState), which an agent before
// indent=true ignores: the answer is indented if its second byte is a
// newline.
func (c *Client) SegmentsJSON(ctx context.Context) (json.RawMessage, error) {
	var raw json.RawMessage
	return raw, c.do(ctx, http.MethodGet, "/v1/state?reports=false&indent=true", nil, &raw)
}

// IndentState indents a state answer as `gpagent state --json` prints it
// (json.Encoder's indent of two spaces), without the final newline. At
// 16,000 segments it takes 50 ms: the agent does it once per topology.
func IndentState(raw []byte) ([]byte, error) {
	var b bytes.Buffer
	b.Grow(len(raw) * 3 / 2)
	if err := json.Indent(&b, raw, "", "  "); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// StaleIndented reports whether an indented state answer says stale,
// from its text: a key of the top-level object, and only one, starts a
// line indented by exactly two spaces (a string cannot hold a raw
// newline), so the answer need not be decoded again.
func StaleIndented(b []byte) bool { return bytes.Contains(b, []byte("\n  \"stale\": true")) }

// History returns every topology change, oldest first.
func (c *Client) History(ctx context.Context) (History, error) {
	var h History
	return h, c.do(ctx, http.MethodGet, "/v1/history", nil, &h)
}

// Init creates the cluster described by req (or confirms that the same
// cluster is already being created, so a re-run can wait for it).
func (c *Client) Init(ctx context.Context, req InitRequest) (*State, error) {
	var s State
	return &s, c.do(ctx, http.MethodPost, "/v1/init", req, &s)
}

// PlanMirrors computes, without changing anything, the mirrors addmirrors
// would add.
func (c *Client) PlanMirrors(ctx context.Context, req MirrorPlanRequest) (*MirrorPlan, error) {
	var p MirrorPlan
	return &p, c.do(ctx, http.MethodPost, "/v1/addmirrors/plan", req, &p)
}

// AddMirrors commits a plan; it fails with ErrStale when the topology
// changed since the plan was made.
func (c *Client) AddMirrors(ctx context.Context, plan MirrorPlan) (*State, error) {
	var s State
	return &s, c.do(ctx, http.MethodPost, "/v1/addmirrors", plan, &s)
}

// Report sends an agent's view of its instances to the leader, which
// answers with the config version it has committed.
func (c *Client) Report(ctx context.Context, r Report) (*ReportAck, error) {
	var ack ReportAck
	return &ack, c.do(ctx, http.MethodPost, "/v1/report", r, &ack)
}

// Topology is the blocking query of GET /v1/topology: a server answers
// once the view asked for changed after q.Index (the whole topology: any
// newer version), once it holds q.Need, once the leader it knows is not
// q.Leader, or after q.Wait. An agent's credential is needed.
func (c *Client) Topology(ctx context.Context, q TopologyQuery) (*TopologyView, error) {
	var v TopologyView
	vals := url.Values{}
	vals.Set("index", strconv.FormatUint(q.Index, 10))
	vals.Set("wait", q.Wait.String())
	if q.Leader != "" {
		vals.Set("leader", q.Leader)
	}
	if q.Host != "" {
		vals.Set("host", q.Host)
	}
	if q.Need > q.Index {
		vals.Set("need", strconv.FormatUint(q.Need, 10))
	}
	return &v, c.once(ctx, http.MethodGet, "/v1/topology?"+vals.Encode(), nil, &v)
}

// TopologyQuery is a blocking query for a host's view of the topology
// (GET /v1/topology).
type TopologyQuery struct {
	// Index: the config version the caller holds; the answer waits for
	// news after it.
	Index uint64
	// Wait bounds the wait; the server answers with what it has then.
	Wait time.Duration
	// Leader: the leader the caller knows; a server that knows another
	// answers at once.
	Leader string
	// Host: the view asked for ("": the whole topology).
	Host string
	// Need: a version the caller must reach (the leader acknowledged its
	// report at it); a server answers as soon as it holds it, even if the
	// host's view is unchanged.
	Need uint64
}

// notLeaderPatience is how long a call waits out an election (a
// not_leader answer) before giving up: long enough for a new leader to
// be elected after the old one's host is lost.
const notLeaderPatience = 15 * time.Second

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	deadline := time.Now().Add(notLeaderPatience)
	for {
		err := c.once(ctx, method, path, in, out)
		if !errors.Is(err, ErrNotLeader) || time.Now().After(deadline) {
			return err
		}
		// not_leader comes before the agent acted (not the leader, no
		// leader known), or after it may have: a forward to the leader
		// broke, or leadership was lost while the change was in Raft.
		// Repeating is safe either way: addmirrors and recover carry the
		// config version they were planned from, so a repeat of one that
		// went in is refused as stale; init, switchover and rebalance
		// attach to what is in progress; pause and resume write nothing
		// when already so; a report replaces the last. initstandby's
		// repeat answers conflict (the standby it added exists).
		select {
		case <-ctx.Done():
			return err
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func (c *Client) once(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode %s request: %w", path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("agent at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("agent at %s: read answer: %w", c.base, err)
	}
	if resp.StatusCode >= 300 {
		return c.answerError(resp.Status, data)
	}
	if out == nil {
		return nil
	}
	if raw, ok := out.(*json.RawMessage); ok {
		// As it came, not scanned: the caller parses it (SegmentsJSON's
		// indents it), and at 16,000 segments each scan of its
		// megabytes was a tenth of `gpagent state --json`.
		*raw = bytes.TrimSpace(data)
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("agent at %s: decode %s answer: %w", c.base, path, err)
	}
	return nil
}

// answerError is the error an answer other than success carries.
func (c *Client) answerError(status string, body []byte) error {
	var e Error
	if json.Unmarshal(body, &e) == nil && e.Code != "" {
		return &e
	}
	return Errorf(CodeInternal, "agent at %s: %s: %s", c.base, status, strings.TrimSpace(string(body)))
}

// DataFiles lists, for a mirror's copy, the data directory of instance
// dbid on this agent's host.
func (c *Client) DataFiles(ctx context.Context, dbid int) ([]DataFile, error) {
	var files []DataFile
	return files, c.once(ctx, http.MethodGet, fmt.Sprintf("/v1/local/files/%d", dbid), nil, &files)
}

// ReadDataFiles returns ranges of the data files of instance dbid, framed
// as supervisor.ServeDataFiles frames them.
func (c *Client) ReadDataFiles(ctx context.Context, dbid int, ranges []FileRange) (io.ReadCloser, error) {
	body, err := json.Marshal(ranges)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, fmt.Sprintf("%s/v1/local/files/%d/read", c.base, dbid), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("agent at %s: %w", c.base, err)
	}
	if resp.StatusCode >= 300 {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		return nil, c.answerError(resp.Status, data)
	}
	return resp.Body, nil
}

// ConnInfo returns where the instances of a content listen.
func (c *Client) ConnInfo(ctx context.Context, content int) (*ConnInfo, error) {
	var ci ConnInfo
	return &ci, c.do(ctx, http.MethodGet, fmt.Sprintf("/v1/conninfo/%d", content), nil, &ci)
}

// SetPaused pauses (true) or resumes automatic failover.
func (c *Client) SetPaused(ctx context.Context, paused bool) (*State, error) {
	path := "/v1/resume"
	if paused {
		path = "/v1/pause"
	}
	var s State
	return &s, c.do(ctx, http.MethodPost, path, struct{}{}, &s)
}

// Switchover starts a planned role swap of one content.
func (c *Client) Switchover(ctx context.Context, content int) (*State, error) {
	var s State
	return &s, c.do(ctx, http.MethodPost, "/v1/switchover", SwitchoverRequest{Content: content}, &s)
}

// InitStandby adds a standby coordinator.
func (c *Client) InitStandby(ctx context.Context, req StandbyRequest) (*State, error) {
	var s State
	return &s, c.do(ctx, http.MethodPost, "/v1/initstandby", req, &s)
}

// PlanRecovery computes what recoverseg would do.
func (c *Client) PlanRecovery(ctx context.Context, req RecoverRequest) (*RecoverPlan, error) {
	var p RecoverPlan
	return &p, c.do(ctx, http.MethodPost, "/v1/recover/plan", req, &p)
}

// Recover commits a recovery plan.
func (c *Client) Recover(ctx context.Context, plan RecoverPlan) (*State, error) {
	var s State
	return &s, c.do(ctx, http.MethodPost, "/v1/recover", plan, &s)
}

// Rebalance starts switchovers back to the preferred roles.
func (c *Client) Rebalance(ctx context.Context, req RebalanceRequest) (*RebalanceResult, error) {
	var r RebalanceResult
	return &r, c.do(ctx, http.MethodPost, "/v1/rebalance", req, &r)
}

// Preflight asks an agent whether instances can be created on its host.
func (c *Client) Preflight(ctx context.Context, req PreflightRequest) error {
	return c.do(ctx, http.MethodPost, "/v1/local/preflight", req, nil)
}

// Members lists the agents, their gossip status and Raft roles.
func (c *Client) Members(ctx context.Context) (*Members, error) {
	var m Members
	return &m, c.do(ctx, http.MethodGet, "/v1/members", nil, &m)
}

// CreateTable creates a distributed table (gpagent table create).
func (c *Client) CreateTable(ctx context.Context, t Table) (TableCreated, error) {
	var out TableCreated
	return out, c.do(ctx, http.MethodPost, "/v1/tables", t, &out)
}

// Tables lists the distributed tables.
func (c *Client) Tables(ctx context.Context) ([]Table, error) {
	var out []Table
	return out, c.do(ctx, http.MethodGet, "/v1/tables", nil, &out)
}
