package agent

import (
	"context"
	"crypto/subtle"
	"crypto/x509"
	"fmt"
	"net/http"
	"strings"

	"github.com/gpagent/gpagent/api"
)

// Who may call what (DESIGN.md, safety rule 9). Agents and operators are
// distinct principals:
//
//   - an agent presents a certificate of the cluster CA whose common name
//     is "agent.<host>" (gpagent tls cert create --agent HOST);
//   - an operator presents one named "operator.<name>" (--operator NAME);
//   - either may instead send the cluster token (token_file), the shared
//     secret of a cluster without TLS, as "Authorization: Bearer <token>".
//     The token stands for the whole cluster: it passes every guard.
//
// Reads (GET state, health, metrics) are open. The routes agents call on
// each other (reports, preflight, the local keyring, the data files) need
// an agent; every other change needs an operator. No credential: 401; a
// credential of the wrong kind: 403.

// Common name prefixes of the two kinds of certificate.
const (
	AgentCNPrefix    = "agent."
	OperatorCNPrefix = "operator."
)

// principalHeader carries, on a request a follower forwards to the
// leader, who the follower authenticated. The leader trusts it only from
// a caller that is itself an agent (or holds the token); from anyone
// else it is ignored.
const principalHeader = "X-Gpagent-Principal"

type principalKind string

const (
	kindNone     principalKind = ""
	kindAgent    principalKind = "agent"
	kindOperator principalKind = "operator"
	kindToken    principalKind = "token"
	kindOther    principalKind = "certificate" // of the cluster CA, but neither agent nor operator
)

// principal is who made a request.
type principal struct {
	kind principalKind
	name string // the host of an agent, the name of an operator, the CN of another certificate
}

func (p principal) String() string {
	if p.kind == kindToken {
		return string(kindToken)
	}
	return string(p.kind) + ":" + p.name
}

// parsePrincipal reads what String wrote.
func parsePrincipal(s string) (principal, bool) {
	if s == string(kindToken) {
		return principal{kind: kindToken}, true
	}
	kind, name, ok := strings.Cut(s, ":")
	switch principalKind(kind) {
	case kindAgent, kindOperator, kindOther:
		if ok && name != "" {
			return principal{kind: principalKind(kind), name: name}, true
		}
	}
	return principal{}, false
}

// certPrincipal names the holder of a verified certificate by its CN.
func certPrincipal(c *x509.Certificate) principal {
	cn := c.Subject.CommonName
	if h, ok := strings.CutPrefix(cn, AgentCNPrefix); ok && h != "" {
		return principal{kind: kindAgent, name: h}
	}
	if n, ok := strings.CutPrefix(cn, OperatorCNPrefix); ok && n != "" {
		return principal{kind: kindOperator, name: n}
	}
	return principal{kind: kindOther, name: cn}
}

type principalKey struct{}

// principalOf is the principal the guard let through (kindNone on open
// routes).
func principalOf(ctx context.Context) principal {
	p, _ := ctx.Value(principalKey{}).(principal)
	return p
}

// authenticate names the caller of r. A verified agent or operator
// certificate names it; otherwise the bearer token, if it is the
// cluster's. A follower's forward carries the principal it authenticated,
// believed only when the follower itself is an agent or holds the token.
func (a *Agent) authenticate(r *http.Request) (principal, *api.Error) {
	if a.tls == nil && a.cfg.Token == "" {
		// insecure: true with neither TLS nor a token: nothing to check
		// (the agent warned at start).
		return principal{kind: kindToken}, nil
	}
	var p principal
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.VerifiedChains[0]) > 0 {
		p = certPrincipal(r.TLS.VerifiedChains[0][0])
	}
	if p.kind == kindNone || p.kind == kindOther {
		if tok, ok := bearer(r); ok {
			if want := a.cfg.Token; want == "" || subtle.ConstantTimeCompare([]byte(tok), []byte(want)) != 1 {
				return principal{}, api.Errorf(api.CodeUnauthorized, "%s %s: the bearer token is not this cluster's token", r.Method, r.URL.Path)
			}
			p = principal{kind: kindToken}
		}
	}
	if p.kind == kindNone {
		return principal{}, api.Errorf(api.CodeUnauthorized, "%s %s needs a credential: a client certificate of the cluster CA (GPAGENT_CLIENT_CERT/KEY) or the cluster token (GPAGENT_TOKEN)", r.Method, r.URL.Path)
	}
	if fwd := r.Header.Get(principalHeader); fwd != "" && (p.kind == kindAgent || p.kind == kindToken) {
		if q, ok := parsePrincipal(fwd); ok {
			return q, nil
		}
		return principal{}, api.Errorf(api.CodeInvalid, "%s: %q is not a principal", principalHeader, fwd)
	}
	return p, nil
}

// bearer returns the token of an "Authorization: Bearer" header.
func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get(api.TokenHeader)
	if h == "" {
		return "", false
	}
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", true // a credential, but not one we take: refused as a bad token
	}
	return strings.TrimSpace(tok), true
}

// guard is what a route requires of its caller.
type guard string

const (
	guardOpen     guard = "open"
	guardAgent    guard = "agent"
	guardOperator guard = "operator"
)

// allows reports whether principal p passes g.
func (g guard) allows(p principal) bool {
	switch g {
	case guardOpen:
		return true
	case guardAgent:
		return p.kind == kindAgent || p.kind == kindToken
	case guardOperator:
		return p.kind == kindOperator || p.kind == kindToken
	}
	return false
}

// routeInfo is one registered route and its guard.
type routeInfo struct {
	Pattern string
	Guard   guard
}

// guardedMux is the API's mux: every route is registered with its guard,
// and only a read (GET, HEAD, OPTIONS) may be open, so a new change route
// cannot be added without saying who may call it.
type guardedMux struct {
	a      *Agent
	mux    *http.ServeMux
	routes []routeInfo
}

func newGuardedMux(a *Agent) *guardedMux { return &guardedMux{a: a, mux: http.NewServeMux()} }

func (m *guardedMux) ServeHTTP(w http.ResponseWriter, r *http.Request) { m.mux.ServeHTTP(w, r) }

// Routes lists what is registered, for the test that walks them.
func (m *guardedMux) Routes() []routeInfo { return m.routes }

func (m *guardedMux) handle(g guard, pattern string, h http.Handler) {
	method, _, hasMethod := strings.Cut(pattern, " ")
	if g == guardOpen && (!hasMethod || (method != http.MethodGet && method != http.MethodHead && method != http.MethodOptions)) {
		panic(fmt.Sprintf("api route %q: only a read may be open", pattern))
	}
	m.routes = append(m.routes, routeInfo{Pattern: pattern, Guard: g})
	if g == guardOpen {
		m.mux.Handle(pattern, h)
		return
	}
	m.mux.Handle(pattern, m.a.require(g, h))
}

func (m *guardedMux) open(pattern string, h http.HandlerFunc)  { m.handle(guardOpen, pattern, h) }
func (m *guardedMux) agent(pattern string, h http.HandlerFunc) { m.handle(guardAgent, pattern, h) }
func (m *guardedMux) operator(pattern string, h http.HandlerFunc) {
	m.handle(guardOperator, pattern, h)
}

// require lets a request through only from a principal g allows: 401
// without a credential, 403 with one of the wrong kind.
func (a *Agent) require(g guard, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, aerr := a.authenticate(r)
		if aerr != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="gpagent"`)
			writeError(w, aerr)
			return
		}
		if !g.allows(p) {
			writeError(w, api.Errorf(api.CodeForbidden, "%s %s is for %ss: %s may not call it", r.Method, r.URL.Path, g, p))
			return
		}
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
	})
}

// checkReporter refuses a report that the caller may not make: an agent
// reports only for its own host. The token vouches for any host.
func checkReporter(p principal, agent string) error {
	if p.kind == kindAgent && p.name != agent {
		return api.Errorf(api.CodeForbidden, "report for agent %q refused: the credential is agent %s's", agent, p.name)
	}
	return nil
}

// ownInstances keeps, of the instances a report names, those the
// topology places on the reporting agent's host: an agent vouches only
// for its own. Others are dropped rather than the whole report refused,
// since right after a move the reporter's topology may lag the leader's.
func (a *Agent) ownInstances(agent string, in []api.InstanceReport) []api.InstanceReport {
	x := a.indexed(a.node.Topology())
	out := in[:0:0]
	for _, r := range in {
		s, ok := x.Segment(r.DBID)
		if !ok || s.Hostname != agent {
			a.log.Warn("report names an instance of another host; ignored", "reporter", agent, "dbid", r.DBID)
			continue
		}
		r.Host = agent
		out = append(out, r)
	}
	return out
}
