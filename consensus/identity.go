package consensus

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// serverIDFile, in the raft dir, holds this member's Raft server id.
const serverIDFile = "server-id"

// serverIDSep separates the agent name from the random part of a server
// id. Agent names cannot contain it (the agent's config refuses it).
const serverIDSep = "#"

// AgentName is the agent name of a Raft server id: the id without its
// random suffix. What users see (members, leader) is the agent name.
func AgentName(id string) string {
	name, _, _ := strings.Cut(id, serverIDSep)
	return name
}

// loadServerID returns this member's Raft server id, kept in
// dir/server-id. A member with no id yet gets name#<random>, created once
// and stored: an agent whose data dir was wiped comes back with a new id,
// so it joins as a fresh member and never takes the place (and the votes)
// of the one it was, whose log it lost (DESIGN.md, safety rule 9). State
// written before ids had a suffix (existing, no file) keeps the bare name.
func loadServerID(dir, name string, existing bool) (string, error) {
	path := filepath.Join(dir, serverIDFile)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		id := strings.TrimSpace(string(b))
		if AgentName(id) != name {
			return "", fmt.Errorf("%s: server id %q is not one of agent %q (a data dir of another agent?)", path, id, name)
		}
		return id, nil
	case !errors.Is(err, os.ErrNotExist):
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	id := name
	if !existing {
		var r [6]byte
		if _, err := rand.Read(r[:]); err != nil {
			return "", fmt.Errorf("server id: %w", err)
		}
		id = name + serverIDSep + hex.EncodeToString(r[:])
	}
	if err := writeFileSync(path, []byte(id+"\n")); err != nil {
		return "", err
	}
	return id, nil
}

// writeFileSync writes path durably (a temporary file, fsync, rename).
func writeFileSync(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
