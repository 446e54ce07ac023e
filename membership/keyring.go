package membership

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"

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

// ErrNotEncrypted: gossip was started without keys, so there is no
// keyring to change (memberlist cannot turn encryption on while it runs).
var ErrNotEncrypted = errors.New("membership: gossip is not encrypted (no gossip keys at start): there is no keyring to change")

// InstallKey adds key to the keyring for decryption; the primary stays.
// Installing a key already there does nothing.
func (m *Membership) InstallKey(key []byte) error {
	if m.keyring == nil {
		return ErrNotEncrypted
	}
	if err := memberlist.ValidateKey(key); err != nil {
		return fmt.Errorf("membership: gossip key is %d bytes, want 16, 24 or 32", len(key))
	}
	return m.keyring.AddKey(bytes.Clone(key))
}

// UseKey makes an installed key the primary, which encrypts what this
// node sends from now on.
func (m *Membership) UseKey(key []byte) error {
	if m.keyring == nil {
		return ErrNotEncrypted
	}
	if err := m.keyring.UseKey(key); err != nil {
		return fmt.Errorf("membership: use gossip key %s: %w", KeyFingerprint(key), err)
	}
	return nil
}

// RemoveKey drops key from the keyring; the primary cannot be removed.
// Removing a key that is not there does nothing.
func (m *Membership) RemoveKey(key []byte) error {
	if m.keyring == nil {
		return ErrNotEncrypted
	}
	if err := m.keyring.RemoveKey(key); err != nil {
		return fmt.Errorf("membership: remove gossip key %s: %w", KeyFingerprint(key), err)
	}
	return nil
}

// Keys returns the keyring's keys, the primary first; nil when gossip is
// not encrypted.
func (m *Membership) Keys() [][]byte {
	if m.keyring == nil {
		return nil
	}
	return m.keyring.GetKeys()
}

// SetKeys makes the keyring hold exactly keys, keys[0] the primary, in
// the order that never leaves it without a key a peer may use: install
// the new ones, switch the primary, then remove the others.
func (m *Membership) SetKeys(keys [][]byte) error {
	if len(keys) == 0 {
		return errors.New("membership: no gossip keys")
	}
	for _, k := range keys {
		if err := m.InstallKey(k); err != nil {
			return err
		}
	}
	if err := m.UseKey(keys[0]); err != nil {
		return err
	}
	for _, k := range m.Keys() {
		if !slices.ContainsFunc(keys, func(x []byte) bool { return bytes.Equal(x, k) }) {
			if err := m.RemoveKey(k); err != nil {
				return err
			}
		}
	}
	return nil
}

// KeyFingerprint names a key without showing it: the first 8 bytes of its
// SHA-256, in hex. Lists and logs show this, never the key.
func KeyFingerprint(key []byte) string {
	sum := sha256.Sum256(key)
	return hex.EncodeToString(sum[:8])
}
