package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/gpagent/gpagent/membership"
)

// ConfigSource is where an agent's config comes from: --config FILE,
// --config-dir DIR, or both (the file first, then the directory's files).
// A reload reads it again, listing the directory anew.
type ConfigSource struct {
	File string
	Dir  string
}

func (s ConfigSource) String() string {
	switch {
	case s.File != "" && s.Dir != "":
		return s.File + " and " + s.Dir
	case s.Dir != "":
		return s.Dir
	}
	return s.File
}

// Files lists what s reads, in order: the file, then the *.yaml files of
// the directory in lexical order (as Consul's -config-dir and conf.d
// folders do, so 10-base.yaml is overridden by 90-site.yaml).
func (s ConfigSource) Files() ([]string, error) {
	var files []string
	if s.File != "" {
		files = append(files, s.File)
	}
	if s.Dir != "" {
		names, err := filepath.Glob(filepath.Join(s.Dir, "*.yaml"))
		if err != nil {
			return nil, fmt.Errorf("config dir %s: %w", s.Dir, err)
		}
		if len(names) == 0 {
			if _, err := os.Stat(s.Dir); err != nil {
				return nil, fmt.Errorf("config dir %s: %w", s.Dir, err)
			}
			return nil, fmt.Errorf("config dir %s: no *.yaml files in it", s.Dir)
		}
		sort.Strings(names)
		files = append(files, names...)
	}
	if len(files) == 0 {
		return nil, errors.New("no config: give --config FILE or --config-dir DIR")
	}
	return files, nil
}

// Load reads, merges and validates s. Each file is decoded strictly on
// its own first, so an unknown field or a bad value is named with its
// file and line; then the files are laid over each other in order: a
// field a later file sets replaces the earlier value (a list whole), and
// fields it leaves out keep theirs. An error in the merged config names
// the field and the last file that set it.
func (s ConfigSource) Load() (*Config, error) {
	files, err := s.Files()
	if err != nil {
		return nil, err
	}
	var merged fileConfig
	setIn := map[string]string{} // dotted field -> last file that set it
	for _, path := range files {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("config %s: %w", path, err)
		}
		var one fileConfig
		if err := decodeStrict(data, &one); err != nil {
			if errors.Is(err, io.EOF) {
				if len(files) > 1 {
					continue // an empty or all-comment file adds nothing
				}
				return nil, fmt.Errorf("config %s: empty config", path)
			}
			return nil, fmt.Errorf("config %s: %w", path, configError(data, err))
		}
		if err := decodeStrict(data, &merged); err != nil {
			return nil, fmt.Errorf("config %s: %w", path, configError(data, err))
		}
		// A *_file path is taken relative to the file that names it.
		for _, f := range secretFiles(&one, &merged) {
			if *f.one != "" && !filepath.IsAbs(*f.one) {
				*f.merged = filepath.Join(filepath.Dir(path), *f.one)
			}
		}
		for _, k := range fieldsSet(data) {
			setIn[k] = path
		}
	}
	if len(setIn) == 0 {
		return nil, fmt.Errorf("config %s: empty config", s)
	}
	where := func(err error) error {
		field, _, _ := strings.Cut(err.Error(), ":")
		field, _, _ = strings.Cut(field, "[") // join[2]
		if f, ok := setIn[field]; ok {
			return fmt.Errorf("config %s: %w", f, err)
		}
		return fmt.Errorf("config %s: %w", s, err)
	}
	if err := merged.readSecrets(); err != nil {
		return nil, where(err)
	}
	cfg, err := merged.validate()
	if err != nil {
		return nil, where(err)
	}
	if merged.GossipKeyFile != "" {
		if cfg.GossipKeys, err = membership.LoadKeyFile(merged.GossipKeyFile); err != nil {
			return nil, where(fmt.Errorf("gossip_key_file: %w", err))
		}
		cfg.GossipKeyFile = merged.GossipKeyFile
	}
	return cfg, nil
}

func decodeStrict(data []byte, into *fileConfig) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	return dec.Decode(into)
}

type secretFile struct {
	field      string // the *_file field, dotted
	one        *string
	merged     *string
	value      *string // the field the file fills
	valueField string
}

// secretFiles pairs each *_file field of one file's config with the
// merged config's. gossip_key_file has no inline twin: keys live only in
// files.
func secretFiles(one, merged *fileConfig) []secretFile {
	return []secretFile{
		{"gossip_key_file", &one.GossipKeyFile, &merged.GossipKeyFile, nil, ""},
		{"token_file", &one.TokenFile, &merged.TokenFile, &merged.token, "token"},
		{"postgres.superuser_password_file", &one.Postgres.SuperPasswordFile, &merged.Postgres.SuperPasswordFile, &merged.Postgres.SuperPassword, "postgres.superuser_password"},
		{"postgres.replication_password_file", &one.Postgres.ReplicationPasswordFile, &merged.Postgres.ReplicationPasswordFile, &merged.Postgres.ReplicationPassword, "postgres.replication_password"},
	}
}

// readSecrets fills each secret from its *_file, so that the config
// files themselves can be world-readable and the secrets not. Giving a
// secret both inline and as a file is an error: which one counts would
// be a guess.
func (fc *fileConfig) readSecrets() error {
	for _, f := range secretFiles(fc, fc) {
		if f.value == nil || *f.merged == "" {
			continue
		}
		if *f.value != "" {
			return fmt.Errorf("%s: %s is given too; give one", f.field, f.valueField)
		}
		data, err := os.ReadFile(*f.merged)
		if err != nil {
			return fmt.Errorf("%s: %w", f.field, err)
		}
		secret := strings.TrimRight(string(data), "\r\n")
		if secret == "" {
			return fmt.Errorf("%s: %s is empty", f.field, *f.merged)
		}
		*f.value = secret
	}
	return nil
}

// fieldsSet returns the dotted names of the fields a config document
// sets (postgres.superuser_password), for naming the file of an error
// found after the merge.
func fieldsSet(data []byte) []string {
	var root yaml.Node
	if yaml.Unmarshal(data, &root) != nil || len(root.Content) == 0 {
		return nil
	}
	var out []string
	var walk func(n *yaml.Node, prefix string)
	walk = func(n *yaml.Node, prefix string) {
		if n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			name := prefix + n.Content[i].Value
			out = append(out, name)
			walk(n.Content[i+1], name+".")
		}
	}
	walk(root.Content[0], "")
	return out
}
