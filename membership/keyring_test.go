package membership

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func b64(n int, fill byte) string {
	return base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{fill}, n))
}

func TestLoadKeyFile(t *testing.T) {
	t.Parallel()
	good := []struct {
		name string
		file string
		want []int // key lengths
	}{
		{"one 32-byte key", b64(32, 1) + "\n", []int{32}},
		{"comments, blanks, CRLF, no final newline", "# gossip keys\r\n\r\n" + b64(16, 1) + "  # old primary\r\n   " + b64(24, 2), []int{16, 24}},
		{"three keys, first is primary", b64(32, 1) + "\n" + b64(32, 2) + "\n" + b64(16, 3) + "\n", []int{32, 32, 16}},
	}
	for _, tc := range good {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "keys")
			if err := os.WriteFile(path, []byte(tc.file), 0o600); err != nil {
				t.Fatal(err)
			}
			keys, err := LoadKeyFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if len(keys) != len(tc.want) {
				t.Fatalf("got %d keys, want %d", len(keys), len(tc.want))
			}
			for i, k := range keys {
				if len(k) != tc.want[i] || k[0] != byte(i+1) {
					t.Errorf("key %d: %d bytes starting %d", i, len(k), k[0])
				}
			}
		})
	}

	bad := []struct {
		name string
		file string
		want string
	}{
		{"invalid base64", b64(32, 1) + "\nnot*base64\n", ":2: gossip key is not valid base64"},
		{"wrong length", "# c\n" + b64(20, 1) + "\n", ":2: gossip key is 20 bytes, want 16, 24 or 32"},
		{"duplicate key", b64(32, 1) + "\n\n" + b64(32, 1) + "\n", ":3: same gossip key as line 1"},
		{"comments only", "# nothing here\n\n", "no gossip keys"},
		{"empty file", "", "no gossip keys"},
	}
	for _, tc := range bad {
		t.Run("rejects "+tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "keys")
			if err := os.WriteFile(path, []byte(tc.file), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := LoadKeyFile(path)
			if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("LoadKeyFile: %v; want the path and %q", err, tc.want)
			}
		})
	}
	t.Run("rejects a missing file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "absent")
		if _, err := LoadKeyFile(path); !os.IsNotExist(errorsUnwrapAll(err)) || !strings.Contains(err.Error(), path) {
			t.Errorf("LoadKeyFile: %v", err)
		}
	})
	t.Run("errors never show key material", func(t *testing.T) {
		key := b64(20, 7)
		_, err := parseKeyFile("f", []byte(key))
		if err == nil || strings.Contains(err.Error(), key) {
			t.Errorf("error %v shows the key", err)
		}
	})
}

func errorsUnwrapAll(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return err
		}
		err = u.Unwrap()
	}
}

// FuzzLoadKeyFile fuzzes the parser behind LoadKeyFile: it never panics,
// and what it accepts is valid keys that parse back the same.
func FuzzLoadKeyFile(f *testing.F) {
	f.Add([]byte(b64(32, 1) + "\n# c\n" + b64(16, 2)))
	f.Add([]byte("# only\n\n"))
	f.Add([]byte("====\n"))
	f.Add([]byte(b64(24, 3) + "#x\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		keys, err := parseKeyFile("fuzz", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "membership: fuzz") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		var again strings.Builder
		for _, k := range keys {
			if n := len(k); n != 16 && n != 24 && n != 32 {
				t.Fatalf("accepted a %d-byte key", n)
			}
			again.WriteString(base64.StdEncoding.EncodeToString(k) + "\n")
		}
		keys2, err := parseKeyFile("again", []byte(again.String()))
		if err != nil || len(keys2) != len(keys) {
			t.Fatalf("re-parse: %d keys, %v", len(keys2), err)
		}
		for i := range keys {
			if !bytes.Equal(keys[i], keys2[i]) {
				t.Fatalf("key %d differs after re-parse", i)
			}
		}
	})
}
