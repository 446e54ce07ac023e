package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"

	"github.com/gpagent/gpagent/api"
	"github.com/gpagent/gpagent/membership"
	"github.com/gpagent/gpagent/supervisor"
	"github.com/gpagent/gpagent/topology"
)

// The data files of a primary are served to the agent building its
// mirror, which copies them with several requests at a time between
// pg_backup_start and pg_backup_stop (supervisor.FileSource). Only
// instances on this host that gpagent made are served, and only what
// their listing names; with TLS on, only to agents.

// dataAccess adds to the agent guard of the data file routes, which give
// away every row and the password verifiers: without TLS, the token
// holder must also call from the address of an agent of the mesh.
func (a *Agent) dataAccess(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if a.tls == nil && !a.fromMember(r.RemoteAddr) {
			writeError(w, api.Errorf(api.CodeForbidden, "%s is for agents: %s is not the address of one", r.URL.Path, r.RemoteAddr))
			return
		}
		h(w, r)
	}
}

// fromMember reports whether remote (host:port) is the address of this
// agent or of one alive in the mesh.
func (a *Agent) fromMember(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	ip := net.ParseIP(host)
	if err != nil || ip == nil {
		return false
	}
	same := func(addr string) bool {
		h, _, err := net.SplitHostPort(addr)
		if err != nil {
			h = addr
		}
		x := net.ParseIP(h)
		return x != nil && x.Equal(ip)
	}
	if same(a.advertisedAPI()) || same(a.cfg.Address) {
		return true
	}
	for _, m := range a.mesh.Members() {
		if m.Status == membership.StatusAlive && (same(m.Addr) || same(m.Meta.APIAddr)) {
			return true
		}
	}
	return false
}

// localOurs returns the instance dbid if the topology places it on this
// host and its data directory is gpagent's.
func (a *Agent) localOurs(r *http.Request) (supervisor.Instance, error) {
	dbid, err := strconv.Atoi(r.PathValue("dbid"))
	if err != nil {
		return supervisor.Instance{}, api.Errorf(api.CodeInvalid, "dbid %q is not a number", r.PathValue("dbid"))
	}
	t := a.node.Topology()
	s, ok := t.Segment(dbid)
	if !ok || s.Hostname != a.cfg.Name {
		return supervisor.Instance{}, api.Errorf(api.CodeNotFound, "dbid %d is not on %s", dbid, a.cfg.Name)
	}
	inst := localInstance(s)
	if !a.drv.Ours(t.ClusterID, inst) {
		return supervisor.Instance{}, api.Errorf(api.CodeNotFound, "dbid %d: no data directory of this cluster at %s", dbid, s.DataDir)
	}
	return inst, nil
}

func (a *Agent) getDataFiles(r *http.Request) (any, error) {
	inst, err := a.localOurs(r)
	if err != nil {
		return nil, err
	}
	files, err := a.drv.DataFiles(inst)
	if errors.Is(err, supervisor.ErrNotCopyable) {
		return nil, api.Errorf(api.CodeConflict, "%v", err)
	}
	if err != nil {
		return nil, err
	}
	out := make([]api.DataFile, len(files))
	for i, f := range files {
		out[i] = api.DataFile(f)
	}
	return out, nil
}

// postReadDataFiles sends ranges of data files, framed (see
// supervisor.ServeDataFiles). The length is set before the body, so that
// a plain-HTTP answer goes out with sendfile(2).
func (a *Agent) postReadDataFiles(w http.ResponseWriter, r *http.Request) {
	inst, err := a.localOurs(r)
	if err != nil {
		writeError(w, toAPIError(err))
		return
	}
	var ranges []api.FileRange
	if err := decode(r, &ranges); err != nil {
		writeError(w, toAPIError(err))
		return
	}
	sr := make([]supervisor.FileRange, len(ranges))
	for i, fr := range ranges {
		sr[i] = supervisor.FileRange(fr)
	}
	started := false
	err = a.drv.ServeDataFiles(inst, sr, w, func(n int64) {
		started = true
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		w.WriteHeader(http.StatusOK)
	})
	switch {
	case err != nil && !started:
		writeError(w, api.Errorf(api.CodeInvalid, "dbid %d: %v", inst.DBID, err))
	case err != nil:
		// The answer ends short of its length; the client asks again.
		a.log.Debug("sending data files cut short", "dbid", inst.DBID, "err", err)
	}
}

// primaryFiles reads the data directory of the acting primary p through
// the agent on its host.
type primaryFiles struct {
	c    *api.Client
	dbid int
}

// copyUpstream is the upstream a new copy of p is made from: p's files
// through its host's agent when that agent is alive in the mesh, else
// pg_basebackup alone.
func (a *Agent) copyUpstream(p topology.Segment) supervisor.Upstream {
	up := supervisor.Upstream{Address: p.Address, Port: p.Port}
	if addr, ok := a.memberAPI(p.Hostname); ok {
		up.Files = primaryFiles{c: a.peerClient(addr), dbid: p.DBID}
	}
	return up
}

// copyStep names the copy step in progress reports.
func copyStep(up supervisor.Upstream) string {
	if up.Files != nil {
		return "file copy"
	}
	return "pg_basebackup"
}

func (pf primaryFiles) List(ctx context.Context) ([]supervisor.DataFile, error) {
	files, err := pf.c.DataFiles(ctx, pf.dbid)
	if err != nil {
		return nil, fmt.Errorf("agent at %s: %w", pf.c.Addr(), err)
	}
	out := make([]supervisor.DataFile, len(files))
	for i, f := range files {
		out[i] = supervisor.DataFile(f)
	}
	return out, nil
}

func (pf primaryFiles) Read(ctx context.Context, ranges []supervisor.FileRange) (io.ReadCloser, error) {
	ar := make([]api.FileRange, len(ranges))
	for i, fr := range ranges {
		ar[i] = api.FileRange(fr)
	}
	return pf.c.ReadDataFiles(ctx, pf.dbid, ar)
}
