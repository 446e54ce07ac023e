package api

import (
	"context"
	"net/http"
)

// Keyring operations (KeyringRequest.Op), as `consul keyring` names them.
const (
	KeyringInstall = "install" // add the key for decryption on every agent
	KeyringUse     = "use"     // make an installed key the one that encrypts
	KeyringRemove  = "remove"  // drop a key that is no longer the primary
)

// KeyringRequest changes the gossip keyring. Key is base64, as in a
// gossip key file; it is never sent back.
type KeyringRequest struct {
	Op  string `json:"op"`
	Key string `json:"key"`
}

// AgentKeyring is one agent's keyring, keys named by fingerprint
// (membership.KeyFingerprint), the primary first; or why it could not be
// read or changed.
type AgentKeyring struct {
	Name  string   `json:"name"`
	Keys  []string `json:"keys,omitempty"`
	Error string   `json:"error,omitempty"`
}

// Keyring is the answer of a keyring list or change: every agent gossip
// knows of, by name.
type Keyring struct {
	Agents []AgentKeyring `json:"agents"`
}

// Keyring lists the gossip keys of every agent.
func (c *Client) Keyring(ctx context.Context) (*Keyring, error) {
	var k Keyring
	return &k, c.once(ctx, http.MethodGet, "/v1/keyring", nil, &k)
}

// ChangeKeyring applies req on every agent (through the agent at the
// client's address, which fans it out).
func (c *Client) ChangeKeyring(ctx context.Context, req KeyringRequest) (*Keyring, error) {
	var k Keyring
	return &k, c.once(ctx, http.MethodPost, "/v1/keyring", req, &k)
}

// LocalKeyring applies req (nil: none) on this agent alone and returns
// its keyring. Agents call it while fanning a change out.
func (c *Client) LocalKeyring(ctx context.Context, req *KeyringRequest) (*AgentKeyring, error) {
	var k AgentKeyring
	if req == nil {
		return &k, c.once(ctx, http.MethodGet, "/v1/local/keyring", nil, &k)
	}
	return &k, c.once(ctx, http.MethodPost, "/v1/local/keyring", req, &k)
}
