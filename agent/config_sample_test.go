package agent

import (
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// The package installs deploy/agent.yaml as /etc/gpagent/agent.yaml: a
// commented file listing every field with its default.
const sampleConfig = "../deploy/agent.yaml"

// commentedField is a "#field: value" line of the sample (a field's
// default or an example); a comment in words has a space after '#'.
var commentedField = regexp.MustCompile(`^(\s*)#([a-z_]+):(.*)$`)

// TestSampleConfig_ListsEveryField: a field added to the config is
// documented in the packaged file too.
func TestSampleConfig_ListsEveryField(t *testing.T) {
	data, err := os.ReadFile(sampleConfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, field := range yamlFields(reflect.TypeFor[fileConfig](), "") {
		// The last part of a dotted name is what the file shows, under
		// its section.
		key := field[strings.LastIndexByte(field, '.')+1:]
		if !regexp.MustCompile(`(?m)^\s*#?\s*` + key + `:`).Match(data) {
			t.Errorf("%s: field %s is not in the sample", sampleConfig, field)
		}
	}
}

// TestSampleConfig_DefaultsAreTrue: with the two passwords set, the file
// as shipped loads, and uncommenting every default it shows changes
// nothing: the defaults it states are the agent's.
func TestSampleConfig_DefaultsAreTrue(t *testing.T) {
	data, err := os.ReadFile(sampleConfig)
	if err != nil {
		t.Fatal(err)
	}
	// Examples, not defaults: their defaults depend on the host (os_user
	// is resolved when the supervisor starts, by the agent's own user) or
	// are "none".
	examples := map[string]bool{"name": true, "address": true, "gossip_addr": true, "join": true, "servers": true, "gossip_key_file": true, "token_file": true, "tls": true, "os_user": true,
		// The *_file forms of the passwords are the alternative to the
		// inline ones, not defaults: both set is an error.
		"superuser_password_file": true, "replication_password_file": true}
	var shipped, uncommented []string
	for _, line := range strings.Split(string(data), "\n") {
		m := commentedField.FindStringSubmatch(line)
		switch {
		case m != nil && strings.HasSuffix(m[2], "_password"):
			line = m[1] + m[2] + ": secret"
			shipped, uncommented = append(shipped, line), append(uncommented, line)
		case m != nil && !examples[m[2]]:
			shipped, uncommented = append(shipped, line), append(uncommented, m[1]+m[2]+":"+m[3])
		default:
			shipped, uncommented = append(shipped, line), append(uncommented, line)
		}
	}
	want, err := ParseConfig([]byte(strings.Join(shipped, "\n")))
	if err != nil {
		t.Fatalf("%s as shipped, passwords set: %v", sampleConfig, err)
	}
	got, err := ParseConfig([]byte(strings.Join(uncommented, "\n")))
	if err != nil {
		t.Fatalf("%s with its defaults uncommented: %v", sampleConfig, err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s: the defaults it shows differ from the agent's:\nshown:  %+v\nagent's: %+v", sampleConfig, got, want)
	}
}

// yamlFields lists a struct's yaml field names, nested ones dotted.
func yamlFields(t reflect.Type, prefix string) []string {
	var out []string
	for f := range t.Fields() {
		name := strings.Split(f.Tag.Get("yaml"), ",")[0]
		if name == "" || name == "-" {
			continue
		}
		out = append(out, prefix+name)
		if f.Type.Kind() == reflect.Struct && f.Type.PkgPath() != "time" {
			out = append(out, yamlFields(f.Type, prefix+name+".")...)
		}
	}
	return out
}
