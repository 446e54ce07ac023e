package agent

import (
	"slices"
	"testing"

	"github.com/gpagent/gpagent/membership"
)

// The peers an agent saw alive survive its restart; a moment with nobody
// alive (cut off, or the last one up) keeps the list it had.
func TestPeers_SavedAcrossRestartAndKeptWhenAlone(t *testing.T) {
	a := &Agent{cfg: &Config{Name: "sdw1", DataDir: t.TempDir()}, log: simLogger(t)}
	if got := a.savedPeers(); got != nil {
		t.Fatalf("a new data dir has peers %v", got)
	}
	a.savePeers([]membership.Member{
		{Name: "sdw1", Addr: "10.0.0.1:7946", Status: membership.StatusAlive},
		{Name: "sdw3", Addr: "10.0.0.3:7946", Status: membership.StatusAlive},
		{Name: "sdw2", Addr: "10.0.0.2:7946", Status: membership.StatusAlive},
		{Name: "sdw4", Addr: "10.0.0.4:7946", Status: membership.StatusDead},
	})
	a.savePeers([]membership.Member{
		{Name: "sdw1", Addr: "10.0.0.1:7946", Status: membership.StatusAlive},
		{Name: "sdw2", Addr: "10.0.0.2:7946", Status: membership.StatusDead},
	})
	restarted := &Agent{cfg: a.cfg, log: a.log}
	want := []string{"10.0.0.2:7946", "10.0.0.3:7946"}
	if got := restarted.savedPeers(); !slices.Equal(got, want) {
		t.Fatalf("saved peers %v, want %v", got, want)
	}
}
