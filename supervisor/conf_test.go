package supervisor

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestManagedConfRoundTrip(t *testing.T) {
	c := managedConf{
		ListenAddresses:  "10.0.0.1",
		Port:             6001,
		SyncStandbyNames: `"gpdbid3", "gpdbid4"`,
		PrimaryConninfo:  connString("10.0.0.2", 6000, "replicator", `p'w\ x`, "application_name", "gpdbid3"),
		PrimarySlotName:  "gpagent_dbid3",
	}
	got, err := parseManagedConf(c.render())
	if err != nil {
		t.Fatal(err)
	}
	if got != c {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, c)
	}
	if _, err := parseManagedConf([]byte("shared_buffers = '1GB'\n")); err == nil {
		t.Fatal("unexpected setting accepted")
	}
}

func TestGucQuote(t *testing.T) {
	for _, v := range []string{"", "plain", `it's`, `back\slash`, `'\''`} {
		q := gucQuote(v)
		got, err := gucUnquote(q)
		if err != nil || got != v {
			t.Errorf("gucUnquote(gucQuote(%q)) = %q, %v", v, got, err)
		}
	}
}

func TestSyncNames(t *testing.T) {
	got, err := syncNames([]string{AppName(3), AppName(5)})
	if err != nil || got != `"gpdbid3", "gpdbid5"` {
		t.Fatalf("syncNames = %q, %v", got, err)
	}
	if got, err := syncNames(nil); err != nil || got != "" {
		t.Fatalf("syncNames(nil) = %q, %v", got, err)
	}
	if _, err := syncNames([]string{`a"b`}); err == nil {
		t.Fatal("quote in application name accepted")
	}
}

func TestParseLSN(t *testing.T) {
	s := "16/B374D848"
	if got := parseLSN(&s); got != 0x16B374D848 {
		t.Fatalf("parseLSN(%s) = %X", s, got)
	}
	if parseLSN(nil) != 0 {
		t.Fatal("nil LSN")
	}
}

func TestProgressLine(t *testing.T) {
	// What pg_basebackup --progress prints when stderr is not a terminal,
	// after runTool trims the line.
	sc := bufio.NewScanner(strings.NewReader("    0/31512 kB (0%), 0/1 tablespace\r31520/31520 kB (100%), 1/1 tablespace\nwaiting\n"))
	sc.Split(scanLinesCR)
	var got [][2]string
	for sc.Scan() {
		if m := progressLine.FindStringSubmatch(strings.TrimSpace(sc.Text())); m != nil {
			got = append(got, [2]string{m[1], m[2]})
		}
	}
	if len(got) != 2 || got[1] != [2]string{"31520", "31520"} {
		t.Fatalf("progress parsed as %v", got)
	}
}

func TestNewErrors(t *testing.T) {
	cfg := testConfig()
	cfg.BinDir = "/nonexistent/pg/bin"
	_, err := New(cfg)
	if err == nil || !strings.Contains(err.Error(), "PostgreSQL binaries not found") || !strings.Contains(err.Error(), "/nonexistent/pg/bin/initdb") {
		t.Fatalf("New with missing binaries: %v", err)
	}
	cfg = testConfig()
	cfg.OSUser = "no_such_user_gpagent"
	_, err = New(cfg)
	want := `OS user "no_such_user_gpagent" not found`
	if os.Geteuid() == 0 {
		want = `running as root: OS user "no_such_user_gpagent" not found; set os_user`
	}
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("New with unknown user: %v, want %q", err, want)
	}
	cfg = testConfig()
	cfg.ReplPassword = ""
	if _, err := New(cfg); err == nil {
		t.Fatal("empty replication password accepted")
	}
	if os.Geteuid() == 0 {
		cfg = testConfig()
		cfg.OSUser = "root"
		if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "refuses to run as root") {
			t.Fatalf("New as root user: %v", err)
		}
	}
}

func TestPreflightWithoutServer(t *testing.T) {
	s := newSup(t)
	root := testRoot(t)
	inst := testInstance(t, root, 7, 3)

	if err := s.Preflight(testCluster, inst); err != nil {
		t.Fatalf("fresh instance: %v", err)
	}

	// An empty directory is fine; one with anything in it is not.
	if err := os.MkdirAll(inst.DataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := s.Preflight(testCluster, inst); err != nil {
		t.Fatalf("empty datadir: %v", err)
	}
	if err := os.WriteFile(filepath.Join(inst.DataDir, "PG_VERSION"), []byte("15\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	wantErr(t, s.Preflight(testCluster, inst), "datadir "+inst.DataDir+" exists and is not a gpagent instance")

	// Another cluster's instance is named as such.
	if err := s.writeMarker(filepath.Join(inst.DataDir, markerFile), "other-cluster", inst); err != nil {
		t.Fatal(err)
	}
	wantErr(t, s.Preflight(testCluster, inst), "belongs to gpagent cluster other-cluster dbid 7")

	// A regular file where the datadir should be.
	file := testInstance(t, root, 8, 4)
	os.MkdirAll(filepath.Dir(file.DataDir), 0o755)
	os.WriteFile(file.DataDir, nil, 0o644)
	wantErr(t, s.Preflight(testCluster, file), "exists and is not a directory")

	// A parent the OS user cannot traverse is named, not chmodded.
	if os.Geteuid() == 0 {
		closed := filepath.Join(root, "closed")
		if err := os.Mkdir(closed, 0o700); err != nil {
			t.Fatal(err)
		}
		hidden := testInstance(t, root, 9, 5)
		hidden.DataDir = filepath.Join(closed, "sub", "gpseg5")
		wantErr(t, s.Preflight(testCluster, hidden), "directory "+closed+" (mode 0700) is not accessible to OS user postgres")
	}

	// A port somebody listens on.
	busy := testInstance(t, root, 10, 6)
	ln := listen(t, busy.Port)
	defer ln.Close()
	wantErr(t, s.Preflight(testCluster, busy), "port "+itoa(busy.Port)+" on 127.0.0.1 is in use")

	// An address of another host.
	far := testInstance(t, root, 11, 7)
	far.Address = "192.0.2.1"
	wantErr(t, s.Preflight(testCluster, far), "address 192.0.2.1 is not an address of this host")
}

func wantErr(t *testing.T, err error, substr string) {
	t.Helper()
	if err == nil || !strings.Contains(err.Error(), substr) {
		t.Fatalf("got error %v, want one containing %q", err, substr)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Fatalf("error is not one line: %q", err)
	}
}
