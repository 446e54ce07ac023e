package agent

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// yaml.v3 reports a mistyped field as "field probe_intervall not found in
// type agent.fileConfig" and a bad value as "cannot unmarshal !!str `soon`
// into time.Duration": Go words. configError says the same in the
// config's own words, with the line and the dotted field name.
var (
	unknownFieldRE = regexp.MustCompile(`^line (\d+): field (.+) not found in type \S+$`)
	badValueRE     = regexp.MustCompile("^line (\\d+): cannot unmarshal !!\\w+ ?(`.*`)? into (\\S+)$")
)

// wantedValue names what a Go type of fileConfig holds, for a DBA.
var wantedValue = map[string]string{
	"time.Duration":        "a duration such as 500ms, 2s or 1m",
	"int":                  "a whole number",
	"bool":                 "true or false",
	"string":               "a single value",
	"[]string":             "a list such as [a, b]",
	"agent.tlsFileConfig":  "a mapping of ca_file, cert_file and key_file",
	"agent.postgresConfig": "a mapping of postgres settings",
}

// configError turns a decoding error of data into one line of plain words.
func configError(data []byte, err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return cleanYAMLError(err)
	}
	var root yaml.Node
	_ = yaml.Unmarshal(data, &root) // it parsed once already
	msgs := make([]string, 0, len(te.Errors))
	for _, e := range te.Errors {
		msgs = append(msgs, typeErrorWords(&root, e))
	}
	return errors.New(strings.Join(msgs, "; "))
}

func typeErrorWords(root *yaml.Node, e string) string {
	if m := unknownFieldRE.FindStringSubmatch(e); m != nil {
		line, _ := strconv.Atoi(m[1])
		name := m[2]
		if path := keyPath(root, line, func(k, _ *yaml.Node) bool { return k.Line == line && k.Value == name }); path != "" {
			name = path
		}
		return fmt.Sprintf("line %d: unknown field %q", line, name)
	}
	if m := badValueRE.FindStringSubmatch(e); m != nil {
		line, _ := strconv.Atoi(m[1])
		field := keyPath(root, line, func(k, v *yaml.Node) bool { return k.Line == line && v.Line == line })
		want, ok := wantedValue[m[3]]
		if !ok {
			want = "a value of another kind"
		}
		value := "this value"
		if m[2] != "" {
			value = strconv.Quote(strings.Trim(m[2], "`"))
		}
		if field == "" {
			return fmt.Sprintf("line %d: %s is not %s", line, value, want)
		}
		return fmt.Sprintf("line %d: %s: %s is not %s", line, field, value, want)
	}
	return strings.TrimSpace(e)
}

// keyPath finds the mapping entry that match accepts and returns its
// dotted name (postgres.superuser), or "".
func keyPath(n *yaml.Node, line int, match func(k, v *yaml.Node) bool) string {
	switch n.Kind {
	case yaml.DocumentNode, yaml.SequenceNode:
		for _, c := range n.Content {
			if p := keyPath(c, line, match); p != "" {
				return p
			}
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if match(k, v) {
				return k.Value
			}
			if p := keyPath(v, line, match); p != "" {
				return k.Value + "." + p
			}
		}
	}
	return ""
}
