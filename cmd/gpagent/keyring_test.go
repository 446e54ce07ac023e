package main

import (
	"bytes"
	"testing"

	"github.com/gpagent/gpagent/api"
)

func TestWriteKeyring(t *testing.T) {
	k := &api.Keyring{Agents: []api.AgentKeyring{
		{Name: "a", Keys: []string{"1111", "2222"}},
		{Name: "b", Keys: []string{"2222", "1111"}},
		{Name: "c", Keys: []string{"2222"}},
		{Name: "d", Error: "not reached: dead in gossip"},
	}}
	var b bytes.Buffer
	writeKeyring(&b, k)
	want := `KEY (fingerprint)  HELD BY     PRIMARY ON
2222               3/4 agents  2
1111               2/4 agents  1
agent d: not reached: dead in gossip
`
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
	if f := keyringFailures(k); len(f) != 1 || f[0] != "d" {
		t.Errorf("failures %v, want d", f)
	}
}
