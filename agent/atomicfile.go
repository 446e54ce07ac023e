package agent

import "os"

// writeFileAtomic writes data to path (mode 0600) through a temporary file
// renamed into place, so a crash leaves the old file or the new one, never
// half of one. The keyring, the gossip peers and instances.json use it.
func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
