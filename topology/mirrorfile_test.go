package topology

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestParseMirrorFile_Good(t *testing.T) {
	cases := []struct {
		name string
		data string
		want []MirrorEntry
	}{
		{"greenplum 7 lines with comments", "# mirrors\n\n0|sdw2|7000|/data/m/gpseg0\r\n  1 | sdw2 | 7001 | /data/m/gpseg1  \n# end\n", []MirrorEntry{
			{Line: 3, Content: 0, Address: "sdw2", Port: 7000, DataDir: "/data/m/gpseg0"},
			{Line: 4, Content: 1, Address: "sdw2", Port: 7001, DataDir: "/data/m/gpseg1"},
		}},
		{"address|port|datadir lines", "sdw2|7000|/m/gpseg0\nsdw1|7000|/m/gpseg1", []MirrorEntry{
			{Line: 1, Content: ContentNotGiven, Address: "sdw2", Port: 7000, DataDir: "/m/gpseg0"},
			{Line: 2, Content: ContentNotGiven, Address: "sdw1", Port: 7000, DataDir: "/m/gpseg1"},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseMirrorFile([]byte(tc.data))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("ParseMirrorFile = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestParseMirrorFile_Errors(t *testing.T) {
	cases := []struct {
		name string
		data string
		want string
	}{
		{"empty", "", "no mirror lines (only blank lines or comments)"},
		{"only comments", "# a\n\n  # b\n", "no mirror lines"},
		{"too few fields", "0|sdw2|7000|/m/gpseg0\nsdw2|7001\n", "line 2: expected content|address|port|datadir or address|port|datadir, got 2 fields"},
		{"too many fields", "0|sdw2|7000|/m/gpseg0|x\n", "line 1: expected content|address|port|datadir"},
		{"port not a number", "# c\n\n0|sdw2|x|/m/gpseg0\n", `line 3: port "x" is not a number`},
		{"port out of range", "0|sdw2|70000|/m/gpseg0\n", "line 1: port: must be 1..65535, got 70000"},
		{"content not a number", "a|sdw2|7000|/m/gpseg0\n", `line 1: content "a" is not a number`},
		{"content of the coordinator", "-1|sdw2|7000|/m/gpseg0\n", "line 1: content -1: only segments (content 0 and up) take mirrors here"},
		{"content -2", "-2|sdw2|7000|/m/gpseg0\n", "line 1: content -2: only segments"},
		{"empty address", "0||7000|/m/gpseg0\n", "line 1: address: must not be empty"},
		{"relative datadir", "0|sdw2|7000|m/gpseg0\n", `line 1: datadir: "m/gpseg0" must be an absolute path`},
		{"mixed formats", "0|sdw2|7000|/m/gpseg0\nsdw2|7001|/m/gpseg1\n", "line 2: has address|port|datadir fields, line 1 has content|address|port|datadir: use one format for the whole file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseMirrorFile([]byte(tc.data))
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("ParseMirrorFile error = %v, want prefix %q", err, tc.want)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
		})
	}
}

func TestMirrorsFromEntries_Good(t *testing.T) {
	topo, hosts, _ := mirrorless(t, 2, 2) // contents 0,1 on sdw1 (sdw1-1); 2,3 on sdw2 (sdw2-1)
	mirror := func(dbid, content, port int, host, addr, dir string) Segment {
		s := seg(dbid, content, RoleMirror, port, host, addr, dir)
		s.Status = StatusDown
		return s
	}
	cases := []struct {
		name  string
		data  string
		hosts []Host
		want  []Segment
	}{
		{"by content, out of order, address or hostname", "3|sdw1-1|7001|/m/gpseg3\n0|sdw2|7000|/m/gpseg0/\n1|sdw2-1|7001|/m/gpseg1\n2|sdw1|7000|/m/gpseg2\n", hosts, []Segment{
			mirror(6, 0, 7000, "sdw2", "sdw2", "/m/gpseg0"),
			mirror(7, 1, 7001, "sdw2", "sdw2-1", "/m/gpseg1"),
			mirror(8, 2, 7000, "sdw1", "sdw1", "/m/gpseg2"),
			mirror(9, 3, 7001, "sdw1", "sdw1-1", "/m/gpseg3"),
		}},
		{"in content order, hosts from the topology", "sdw2-1|7000|/m/gpseg0\nsdw2-1|7001|/m/gpseg1\n", nil, []Segment{
			mirror(6, 0, 7000, "sdw2", "sdw2-1", "/m/gpseg0"),
			mirror(7, 1, 7001, "sdw2", "sdw2-1", "/m/gpseg1"),
		}},
		{"beside its primary, as gpaddmirrors allows", "0|sdw1|7000|/m/gpseg0\n", hosts, []Segment{
			mirror(6, 0, 7000, "sdw1", "sdw1", "/m/gpseg0"),
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			entries, err := ParseMirrorFile([]byte(tc.data))
			if err != nil {
				t.Fatal(err)
			}
			before := snapshot(topo)
			got, err := MirrorsFromEntries(topo, tc.hosts, entries)
			if err != nil {
				t.Fatal(err)
			}
			if snapshot(topo) != before {
				t.Fatal("MirrorsFromEntries changed its topology")
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("MirrorsFromEntries =\n%s\nwant\n%s", segmentLines(got), segmentLines(tc.want))
			}
		})
	}
}

func TestMirrorsFromEntries_Errors(t *testing.T) {
	cases := []struct {
		name    string
		data    string
		entries []MirrorEntry // used when data is empty
		topo    func(*Topology)
		want    string
	}{
		{name: "unknown host", data: "0|sdw2|7000|/m/gpseg0\n1|sdw9|7000|/m/gpseg1\n", want: `line 2: unknown host "sdw9": not the hostname or address of a segment host`},
		{name: "unknown content", data: "# x\n9|sdw2|7000|/m/gpseg9\n", want: "line 2: content 9 is not a segment of the cluster"},
		{name: "more lines than contents", data: "sdw2|7000|/m/a\nsdw2|7001|/m/b\nsdw1|7000|/m/c\nsdw1|7001|/m/d\nsdw1|7002|/m/e\n", want: "line 5: content 4 is not a segment of the cluster"},
		{name: "content listed twice", data: "0|sdw2|7000|/m/gpseg0\n1|sdw2|7001|/m/gpseg1\n0|sdw2|7002|/m/x\n", want: "line 3: content 0 listed twice (also line 1)"},
		{name: "content already mirrored", data: "0|sdw2|7000|/m/gpseg0\n", topo: func(t *Topology) {
			m := seg(6, 0, RoleMirror, 7000, "sdw2", "sdw2", "/old/gpseg0")
			t.Segments = append(t.Segments, m)
		}, want: "line 1: content 0 already has a mirror, dbid 6 (content 0, sdw2:7000 /old/gpseg0)"},
		{name: "on its primary's port", data: "0|sdw1-1|6000|/m/gpseg0\n", want: "line 1: port 6000 on sdw1 is also used by dbid 2 (content 0, sdw1:6000 /data/p0/gpseg0)"},
		{name: "in its primary's datadir", data: "0|sdw1|7000|/data/p0/gpseg0\n", want: "line 1: datadir /data/p0/gpseg0 on sdw1 is also used by dbid 2"},
		{name: "inside another's datadir", data: "0|sdw2|7000|/data/p0/gpseg2/m\n", want: "line 1: datadir /data/p0/gpseg2/m on sdw2 lies inside the datadir of dbid 4"},
		{name: "holding another's datadir", data: "0|sdw2|7000|/data\n", want: "line 1: datadir /data on sdw2 holds the datadir of dbid 4"},
		{name: "two lines on one port", data: "1|sdw2|7000|/m/gpseg1\n0|sdw2|7000|/m/gpseg0\n", want: "line 1: port 7000 on sdw2 is also used by line 2 (content 0, sdw2:7000 /m/gpseg0)"},
		{name: "no entries", entries: []MirrorEntry{}, want: "no mirror entries"},
		{name: "entries mixed", entries: []MirrorEntry{
			{Line: 1, Content: 0, Address: "sdw2", Port: 7000, DataDir: "/m/a"},
			{Line: 2, Content: ContentNotGiven, Address: "sdw2", Port: 7001, DataDir: "/m/b"},
		}, want: "line 2: mixes entries with and without a content"},
		{name: "entry without line", entries: []MirrorEntry{
			{Content: 0, Address: "sdw2", Port: 0, DataDir: "/m/a"},
		}, want: "entry 1: port: must be 1..65535, got 0"},
		{name: "address names two hosts", data: "0|shared|7000|/m/gpseg0\n", topo: func(t *Topology) {
			t.Segments[1].Address = "shared" // content 0 on sdw1
			t.Segments[3].Address = "shared" // content 2 on sdw2
		}, want: `line 1: "shared" names more than one segment host`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			topo, _, _ := mirrorless(t, 2, 2)
			if tc.topo != nil {
				tc.topo(topo)
			}
			entries := tc.entries
			if tc.data != "" {
				var err error
				if entries, err = ParseMirrorFile([]byte(tc.data)); err != nil {
					t.Fatal(err)
				}
			}
			_, err := MirrorsFromEntries(topo, nil, entries)
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("MirrorsFromEntries error = %v, want prefix %q", err, tc.want)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
		})
	}
}
