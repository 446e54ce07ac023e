package membership

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"os"

	"github.com/hashicorp/memberlist"
)

// maxKeyFileSize rejects a file that cannot be a key file (someone passed
// the wrong path) before it is read into memory line by line.
const maxKeyFileSize = 64 << 10

// LoadKeyFile reads gossip encryption keys: one base64 key per line (as
// `openssl rand -base64 32` prints one), blank lines and # comments
// ignored. Keys are 16, 24 or 32 bytes (AES-128, -192, -256). The first key
// is the primary, which encrypts what this node sends; the others only
// decrypt. That is how a key is rotated without stopping the cluster: add
// the new key second everywhere, then make it first everywhere, then drop
// the old one. Errors name the file and line but never show key material.
func LoadKeyFile(path string) ([][]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("membership: gossip key file: %w", err)
	}
	return parseKeyFile(path, data)
}

// parseKeyFile is LoadKeyFile on the file's contents; name is for errors.
func parseKeyFile(name string, data []byte) ([][]byte, error) {
	if len(data) > maxKeyFileSize {
		return nil, fmt.Errorf("membership: %s: %d bytes is too large for a gossip key file", name, len(data))
	}
	var keys [][]byte
	firstLine := map[string]int{} // key -> line it first appeared on
	lineNo := 0
	for line := range bytes.Lines(data) {
		lineNo++
		// '#' is not in the base64 alphabet, so a comment can also end a line.
		if i := bytes.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		key := make([]byte, base64.StdEncoding.DecodedLen(len(line)))
		n, err := base64.StdEncoding.Decode(key, line)
		if err != nil {
			return nil, fmt.Errorf("membership: %s:%d: gossip key is not valid base64: %w", name, lineNo, err)
		}
		key = key[:n]
		if err := memberlist.ValidateKey(key); err != nil {
			return nil, fmt.Errorf("membership: %s:%d: gossip key is %d bytes, want 16, 24 or 32", name, lineNo, len(key))
		}
		if prev, dup := firstLine[string(key)]; dup {
			return nil, fmt.Errorf("membership: %s:%d: same gossip key as line %d", name, lineNo, prev)
		}
		firstLine[string(key)] = lineNo
		keys = append(keys, key)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("membership: %s: no gossip keys in file", name)
	}
	return keys, nil
}

// newKeyring builds memberlist's keyring from Config.Keys, Keys[0] primary.
// It copies the keys: memberlist keeps them, the caller may reuse its slices.
func newKeyring(keys [][]byte) (*memberlist.Keyring, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	own := make([][]byte, len(keys))
	for i, k := range keys {
		if err := memberlist.ValidateKey(k); err != nil {
			return nil, fmt.Errorf("membership: gossip key %d is %d bytes, want 16, 24 or 32", i, len(k))
		}
		own[i] = bytes.Clone(k)
	}
	ring, err := memberlist.NewKeyring(own, own[0])
	if err != nil {
		return nil, fmt.Errorf("membership: gossip keyring: %w", err)
	}
	return ring, nil
}
