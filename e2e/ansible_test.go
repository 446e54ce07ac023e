package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gpagent/gpagent/agent"
)

// TestAnsible_PlaybookAndConfigs checks deploy/ansible: the playbook passes
// ansible-playbook --syntax-check, and the agent config its template
// renders for every inventory host is one the agent accepts, with the
// host's addresses, the other hosts to join and a password that needs
// quoting kept as it was.
func TestAnsible_PlaybookAndConfigs(t *testing.T) {
	playbook := requireTool(t, "ansible-playbook", "ansible-core")
	ansible := requireTool(t, "ansible", "ansible-core")
	const dir = "../deploy/ansible"
	runCmd(t, 2*time.Minute, playbook, "--syntax-check", "-i", filepath.Join(dir, "inventory.ini"), filepath.Join(dir, "site.yml"))

	out := t.TempDir()
	const password = `p"w: 1 #x'`
	vars, _ := json.Marshal(map[string]string{"vault_gpagent_superuser_password": password, "vault_gpagent_replication_password": "r"})
	// -c local: the template is rendered on this machine for each host.
	cmd := []string{"all", "-i", filepath.Join(dir, "inventory.ini"), "-c", "local", "-e", string(vars),
		"-m", "ansible.builtin.template", "-a", "src=" + filepath.Join(dir, "templates/agent.yaml.j2") + " dest=" + out + "/{{ inventory_hostname }}.yaml"}
	runCmd(t, 2*time.Minute, ansible, cmd...)

	hosts := map[string]string{"mdw": "10.0.0.10", "sdw1": "10.0.0.11", "sdw2": "10.0.0.12"} // inventory.ini
	for name, addr := range hosts {
		// ParseConfig, not LoadConfig: the gossip key file it names is
		// on the hosts, not here.
		data, err := os.ReadFile(filepath.Join(out, name+".yaml"))
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := agent.ParseConfig(data)
		if err != nil {
			t.Errorf("%s: the rendered config is refused: %v", name, err)
			continue
		}
		if !strings.Contains(string(data), "\ntoken_file: /etc/gpagent/token\n") || !strings.Contains(string(data), "\ngossip_key_file: ") {
			t.Errorf("%s: the rendered config names no token_file or gossip_key_file:\n%s", name, data)
		}
		if cfg.Name != name || cfg.Address != addr || cfg.APIAddr != addr+":7070" || cfg.RaftAddr != addr+":7071" {
			t.Errorf("%s: name %s address %s api %s raft %s", name, cfg.Name, cfg.Address, cfg.APIAddr, cfg.RaftAddr)
		}
		var wantJoin []string
		for other, a := range hosts {
			if other != name {
				wantJoin = append(wantJoin, a+":7946")
			}
		}
		slices.Sort(wantJoin)
		if got := slices.Sorted(slices.Values(cfg.Join)); !slices.Equal(got, wantJoin) {
			t.Errorf("%s: join %v, want %v", name, got, wantJoin)
		}
		if cfg.TLSCAFile == "" || cfg.SuperPassword != password || cfg.BootstrapExpect != 3 || cfg.LogFormat != agent.LogFormatJSON {
			t.Errorf("%s: tls %q, password %q (want %q), bootstrap_expect %d, log_format %s", name, cfg.TLSCAFile, cfg.SuperPassword, password, cfg.BootstrapExpect, cfg.LogFormat)
		}
	}
}

// requireTool finds a binary a deploy test needs. A machine without it
// skips the test, unless CI is set: .ci/run installs it, so there it fails.
func requireTool(t *testing.T, name, debPackage string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	why := name + " is missing (Debian: apt-get install " + debPackage + ")"
	if os.Getenv("CI") == "" {
		t.Skip(why + "; skipped because CI is not set. .ci/run installs it and fails here instead.")
	}
	t.Fatal(why + "; .ci/run installs it: it must not be missing in CI")
	return ""
}
