package supervisor

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gpagent/gpagent/topology"
)

// TestFence_EndsCoordinatorSessions: after a fence, the coordinator's
// postgres_fdw sessions (application_name gpagent_coordinator) are gone,
// so no coordinator query is answered by the fenced primary over a
// connection cached before the fence, and a new coordinator connection
// (target_session_attrs=read-write, as the catalog's foreign servers ask)
// is refused. Other sessions stay (their commits wait on the fence).
func TestFence_EndsCoordinatorSessions(t *testing.T) {
	t.Parallel()
	s := newSup(t)
	root := testRoot(t)
	inst := testInstance(t, root, 2, 0)
	stopOnCleanup(t, s, inst)
	if err := s.InitPrimary(ctxT(t, 60*time.Second), testCluster, inst); err != nil {
		t.Fatalf("InitPrimary: %v", err)
	}
	dial := func(app string, kv ...string) (*pgx.Conn, error) {
		kv = append([]string{"dbname", "postgres", "sslmode", "disable", "application_name", app}, kv...)
		return pgx.Connect(ctxT(t, 10*time.Second), connString(inst.Address, inst.Port, "gpadmin", testSuperPassword, kv...))
	}
	coord, err := dial(topology.CoordinatorAppName)
	if err != nil {
		t.Fatal(err)
	}
	defer coord.Close(context.Background())
	other, err := dial("someone")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(context.Background())

	if err := s.Fence(ctxT(t, 30*time.Second), inst); err != nil {
		t.Fatalf("Fence: %v", err)
	}
	waitFor(t, 10*time.Second, "the coordinator's session ended by the fence", func() (bool, string) {
		var one int
		err := coord.QueryRow(ctxT(t, 5*time.Second), "SELECT 1").Scan(&one)
		return err != nil, "the coordinator's session still answers on the fenced primary"
	})
	var ro string
	if err := other.QueryRow(ctxT(t, 5*time.Second), "SHOW default_transaction_read_only").Scan(&ro); err != nil || ro != "on" {
		t.Errorf("another session after the fence: read_only=%q err=%v; want it kept, read-only", ro, err)
	}
	if c, err := dial(topology.CoordinatorAppName, "target_session_attrs", "read-write"); err == nil {
		c.Close(context.Background())
		t.Error("a new read-write coordinator connection was accepted by the fenced primary")
	} else if !strings.Contains(err.Error(), "read") {
		t.Logf("new read-write connection refused: %v", err)
	}
	if err := s.Unfence(ctxT(t, 30*time.Second), inst); err != nil {
		t.Fatalf("Unfence: %v", err)
	}
}
