package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gpagent/gpagent/api"
	"github.com/gpagent/gpagent/topology"
)

// TestSwitchover_AbandonedIsAnError: an agent abandons the switchover (its
// mirror never reached the shutdown checkpoint); `gpagent switchover`
// returns at once with the history's reason, not after its timeout.
func TestSwitchover_AbandonedIsAnError(t *testing.T) {
	pair := func(pStatus topology.Status, mode topology.Mode) []topology.Segment {
		return []topology.Segment{
			{DBID: 2, Content: 0, Role: topology.RolePrimary, PreferredRole: topology.RolePrimary, Status: pStatus, Mode: mode, Hostname: "sdw1", Port: 6000},
			{DBID: 5, Content: 0, Role: topology.RoleMirror, PreferredRole: topology.RoleMirror, Status: topology.StatusUp, Mode: mode, Hostname: "sdw2", Port: 7000},
		}
	}
	var begun atomic.Bool
	why := "content 0: switchover abandoned: mirror dbid 5 did not replay past the primary's shutdown checkpoint (lsn 100; mirror at 90) within 8.5s; primary dbid 2, stopped cleanly with every commit, restarts in place as primary"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var out any
		switch r.URL.Path {
		case "/v1/state":
			out = &api.State{ConfigVersion: 1, Segments: pair(topology.StatusUp, topology.ModeSynced)}
			if begun.Load() {
				out = &api.State{ConfigVersion: 3, Segments: pair(topology.StatusDown, topology.ModeNotSynced)}
			}
		case "/v1/switchover":
			begun.Store(true)
			out = &api.State{ConfigVersion: 2, Segments: pair(topology.StatusUp, topology.ModeSynced),
				Switchovers: []topology.Switchover{{Content: 0, From: 2, To: 5, Version: 2}}}
		case "/v1/history":
			out = api.History{{DBID: 2, Desc: why}, {DBID: 5, Desc: "content 0: dbid 5 stays mirror, not in sync (switchover abandoned)"}}
		default:
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode(out)
	}))
	defer srv.Close()
	var out, errb bytes.Buffer
	start := time.Now()
	err := cmdSwitchover(context.Background(), cmdIO{in: strings.NewReader(""), out: &out, err: &errb},
		[]string{"--addr", strings.TrimPrefix(srv.URL, "http://"), "--content", "0", "-a", "--timeout", "20s"})
	if err == nil || !strings.Contains(err.Error(), "switchover failed") || !strings.Contains(err.Error(), "shutdown checkpoint") {
		t.Fatalf("switchover: %v, want the abandonment and its reason\n%s", err, out.String())
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Errorf("returned after %s: it waited for its timeout", el)
	}
}
