package catalog

import (
	"strings"
	"testing"

	"github.com/gpagent/gpagent/topology"
)

func TestServers_ActingPrimaryFirst(t *testing.T) {
	tp := &topology.Topology{Segments: []topology.Segment{
		{DBID: 1, Content: -1, Role: "p", Status: "u", Address: "mdw", Port: 5432},
		{DBID: 2, Content: 0, Role: "m", Status: "d", Address: "sdw1", Port: 6000},
		{DBID: 3, Content: 1, Role: "p", Status: "u", Address: "sdw2", Port: 6000},
		{DBID: 4, Content: 0, Role: "p", Status: "u", Address: "sdw2", Port: 7000},
		{DBID: 5, Content: 1, Role: "m", Status: "u", Address: "sdw1", Port: 7000},
	}}
	got := Servers(tp)
	if len(got) != 2 {
		t.Fatalf("%d servers, want one per segment content (2): %+v", len(got), got)
	}
	for _, c := range []struct {
		i           int
		host, ports string
	}{{0, "sdw2,sdw1", "7000,6000"}, {1, "sdw2,sdw1", "6000,7000"}} {
		o := got[c.i].Options()
		if o["host"] != c.host || o["port"] != c.ports || o["target_session_attrs"] != "read-write" || o["async_capable"] != "true" {
			t.Errorf("content %d: %v, want host %s port %s, read-write, async", c.i, o, c.host, c.ports)
		}
	}
	if ServerName(1) != "gpseg1" {
		t.Errorf("ServerName(1) = %s", ServerName(1))
	}
}

func TestOptionList_AlterSetsAndAdds(t *testing.T) {
	got := optionList(map[string]string{"host": "b", "port": "1", "new": "x'y"}, map[string]string{"host": "a", "port": "1"})
	if got != "SET host 'b', ADD new 'x''y'" {
		t.Errorf("optionList = %q", got)
	}
	if got := optionList(map[string]string{"b": "2", "a": "1"}, nil); got != "a '1', b '2'" {
		t.Errorf("create optionList = %q", got)
	}
}

func TestTableCheck(t *testing.T) {
	ok := Table{Name: "region", DistributedBy: "r_regionkey", DDL: "CREATE TABLE region (r_regionkey int)"}
	if err := ok.Check(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		t    Table
		want string
	}{
		{Table{Name: "Region", DistributedBy: "k", DDL: ok.DDL}, "NAME"},
		{Table{Name: "region", DistributedBy: "k;", DDL: ok.DDL}, "--distributed-by"},
		{Table{Name: "region", DistributedBy: "k", DDL: "CREATE TABLE nation (k int)"}, "--ddl"},
		{Table{Name: "region", DistributedBy: "k", DDL: "CREATE TABLE region (k int); DROP TABLE x"}, "--ddl"},
	} {
		if err := c.t.Check(); err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an error naming %s", c.t, err, c.want)
		}
	}
}
