package membership

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/hashicorp/memberlist"
)

// MaxMetaSize is memberlist's limit on a node's encoded metadata: it rides
// in every alive message, which must fit a UDP packet with the rest.
const MaxMetaSize = memberlist.MetaMaxSize

// ErrMetaTooLarge is returned by New and UpdateMeta for metadata whose JSON
// encoding is over MaxMetaSize. memberlist itself panics on it.
var ErrMetaTooLarge = errors.New("node metadata too large")

// Meta is what a node tells the others about itself, JSON-encoded into
// memberlist's node metadata. Short JSON keys leave room under the limit;
// decoding ignores unknown keys so that a newer agent can add some.
type Meta struct {
	Name     string `json:"name"`
	APIAddr  string `json:"api"`  // host:port of the agent's HTTP API
	RaftAddr string `json:"raft"` // host:port of its Raft transport
	Version  string `json:"ver"`
	// RaftID is the agent's Raft server id (name#random): a new one
	// means the agent's data dir was wiped, and the leader replaces the
	// member it was by a fresh one.
	RaftID string `json:"rid,omitempty"`
}

// encodeMeta is the metadata as memberlist will carry it.
func encodeMeta(meta Meta) ([]byte, error) {
	b, err := json.Marshal(meta)
	if err != nil {
		return nil, fmt.Errorf("membership: encode node metadata: %w", err)
	}
	if len(b) > MaxMetaSize {
		return nil, fmt.Errorf("membership: node metadata is %d bytes as JSON, memberlist allows %d (shorten name, api, raft or ver): %w",
			len(b), MaxMetaSize, ErrMetaTooLarge)
	}
	return b, nil
}

// decodeMeta reads another node's metadata.
func decodeMeta(b []byte) (Meta, error) {
	var meta Meta
	if len(b) == 0 {
		return meta, errors.New("node has no metadata (not a gpagent?)")
	}
	if err := json.Unmarshal(b, &meta); err != nil {
		return meta, fmt.Errorf("decode node metadata: %w", err)
	}
	return meta, nil
}

// localMeta fills in and checks the metadata this node advertises. The
// name is the node's: two names for one node would leave the reader
// guessing which one the topology uses.
func localMeta(nodeName string, meta Meta) (Meta, []byte, error) {
	switch meta.Name {
	case "":
		meta.Name = nodeName
	case nodeName:
	default:
		return meta, nil, fmt.Errorf("membership: meta name %q differs from node name %q", meta.Name, nodeName)
	}
	b, err := encodeMeta(meta)
	return meta, b, err
}
