package topology

import (
	"errors"
	"testing"
)

func TestPlaceStandby(t *testing.T) {
	// decUp's coordinator is dbid 1 on host1:6000 in /data/dbid1; drop its
	// standby (dbid 4) to have a cluster without one, and move dbid 3 to
	// port 6001 so a standby on host3 may take the coordinator's port.
	noStandby := func(t decFatalfer) *Topology {
		topo := decUp(t, true).Clone()
		topo.Segments = append(topo.Segments[:3:3], topo.Segments[4:]...)
		topo.Segments[2].Port = 6001
		return topo
	}
	want := func(host, addr string, port int, dir string) Segment {
		return Segment{DBID: 7, Content: CoordinatorContent, Role: RoleMirror, PreferredRole: RoleMirror,
			Mode: ModeNotSynced, Status: StatusDown, Hostname: host, Address: addr, Port: port, DataDir: dir}
	}
	cases := []struct {
		name    string
		topo    func(decFatalfer) *Topology
		req     StandbyRequest
		want    Segment
		wantErr error
		errText string
	}{
		{"on the coordinator's host with a port", noStandby, StandbyRequest{Port: 6005},
			want("host1", "host1", 6005, "/standby/dbid1"), nil, ""},
		{"on another host: its address, the coordinator's port", noStandby, StandbyRequest{Host: "host3"},
			want("host3", "host3", 6000, "/standby/dbid1"), nil, ""},
		{"the data dir as given", noStandby, StandbyRequest{Host: "host3", Port: 6100, DataDir: "/sb/coord"},
			want("host3", "host3", 6100, "/sb/coord"), nil, ""},
		{"on the coordinator's host without a port", noStandby, StandbyRequest{},
			Segment{}, ErrInvalid, "-P: required when the standby shares the coordinator's host host1"},
		{"on a host with no instance", noStandby, StandbyRequest{Host: "nowhere"},
			Segment{}, ErrInvalid, "-s nowhere: no instance on that host; its address is unknown"},
		{"a standby already there", func(t decFatalfer) *Topology { return decUp(t, true) }, StandbyRequest{Port: 6005},
			Segment{}, ErrHasStandby, "the coordinator already has a standby: dbid 4 on host4:6000"},
		{"no coordinator", func(decFatalfer) *Topology { return &Topology{} }, StandbyRequest{},
			Segment{}, ErrNoCoordinator, "no coordinator: run gpagent init first"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			topo := c.topo(t)
			before := snapshot(topo)
			got, err := PlaceStandby(topo, c.req)
			nsSameTopology(t, before, topo)
			if c.wantErr != nil {
				if !errors.Is(err, c.wantErr) || err.Error() != c.errText {
					t.Fatalf("PlaceStandby: %v, want %q (%v)", err, c.errText, c.wantErr)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("PlaceStandby:\n got %+v, %v\nwant %+v", got, err, c.want)
			}
			// The placed standby is a pending mirror Apply accepts.
			next := decApply(t, topo, Command{Type: CmdAddMirrors, Segments: []Segment{got}})
			if !next.IsPending(got.DBID) {
				t.Fatalf("standby dbid %d not pending after addmirrors", got.DBID)
			}
		})
	}
}
