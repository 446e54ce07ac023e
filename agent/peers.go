package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/gpagent/gpagent/membership"
	"github.com/gpagent/gpagent/watchdog"
)

// PeersFile, in the data dir, holds the gossip addresses of the other
// agents this one last saw alive. It is only a hint (the Raft
// configuration knows the members, but not their gossip addresses): an
// agent restarted on its data dir joins gossip through it even with no
// join list, as the bootstrap agent usually has none. A wiped agent has
// none and joins as a fresh member through its join list or the others'
// dials, as before.
const PeersFile = "gossip-peers.json"

// savedPeers reads PeersFile; none (a new or wiped agent) is no peers.
func (a *Agent) savedPeers() []string {
	path := filepath.Join(a.cfg.DataDir, PeersFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	var addrs []string
	if err == nil {
		err = json.Unmarshal(b, &addrs)
	}
	if err != nil {
		a.log.Warn("saved gossip peers unreadable; rejoining only through join and the others' dials", "path", path, "err", err)
		return nil
	}
	return addrs
}

// savePeers records the gossip addresses of the other members alive now,
// when they differ from the ones last saved (mesh loop only). An agent
// that sees nobody alive (cut off, or the last one up) keeps the old list:
// those are the ones to try after a restart.
func (a *Agent) savePeers(members []membership.Member) {
	var addrs []string
	for _, m := range members {
		if m.Name != a.cfg.Name && m.Status == membership.StatusAlive && m.Addr != "" {
			addrs = append(addrs, m.Addr)
		}
	}
	slices.Sort(addrs)
	if len(addrs) == 0 || slices.Equal(addrs, a.peersSaved) {
		return
	}
	if err := writePeers(filepath.Join(a.cfg.DataDir, PeersFile), addrs); err != nil {
		a.log.Warn("gossip peers not saved; a restart without a join list may not find the others", "err", err)
		return
	}
	a.peersSaved = addrs
}

// writePeers writes the list atomically: a crash leaves the old file or
// the new one.
func writePeers(path string, addrs []string) error {
	b, err := json.Marshal(addrs)
	if err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	if err := watchdog.WriteFileAtomic(path, append(b, '\n')); err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	return nil
}
