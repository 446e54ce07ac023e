package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/gpagent/gpagent/api"
)

// cmdKeyring lists or changes the gossip encryption keys of every agent,
// as `consul keyring` does. A rotation is three runs, each on every
// agent: --install NEW, --use NEW, --remove OLD. Keys are shown by
// fingerprint only.
func cmdKeyring(ctx context.Context, cio cmdIO, args []string) error {
	fs := newFlags(cio, "keyring", "--list | --install KEY | --use KEY | --remove KEY  (KEY base64; - reads it from standard input)")
	addr := addrFlag(fs)
	list := fs.Bool("list", false, "list the keys every agent holds")
	install := fs.String("install", "", "add KEY on every agent, for decryption only")
	use := fs.String("use", "", "make KEY, installed on every agent, the one that encrypts")
	remove := fs.String("remove", "", "drop KEY, no longer the primary anywhere, from every agent")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var req *api.KeyringRequest
	for op, key := range map[string]string{api.KeyringInstall: *install, api.KeyringUse: *use, api.KeyringRemove: *remove} {
		if key == "" {
			continue
		}
		if req != nil || *list {
			fmt.Fprintln(cio.err, "gpagent keyring: give one of --list, --install, --use, --remove")
			return errUsage
		}
		req = &api.KeyringRequest{Op: op, Key: key}
	}
	if req == nil && !*list {
		fmt.Fprintln(cio.err, "gpagent keyring: give one of --list, --install, --use, --remove")
		return errUsage
	}
	c := client(*addr)
	var k *api.Keyring
	var err error
	if req == nil {
		k, err = c.Keyring(ctx)
	} else {
		if req.Key == "-" {
			if req.Key, err = readKey(cio.in); err != nil {
				return err
			}
		}
		k, err = c.ChangeKeyring(ctx, *req)
	}
	if err != nil {
		return err
	}
	writeKeyring(cio.out, k)
	if failed := keyringFailures(k); len(failed) > 0 {
		what := "read"
		if req != nil {
			what = req.Op + " not applied"
		}
		return fmt.Errorf("%s on %d of %d agents: %s; run it again once they are back", what, len(failed), len(k.Agents), strings.Join(failed, ", "))
	}
	return nil
}

// readKey reads one key from the first line of r, so that it need not
// appear on a command line (where ps shows it).
func readKey(r io.Reader) (string, error) {
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read the key from standard input: %w", err)
	}
	if line = strings.TrimSpace(line); line == "" {
		return "", errors.New("no key on standard input")
	}
	return line, nil
}

// writeKeyring prints each key with how many agents hold it and how many
// encrypt with it, then the agents that could not answer.
func writeKeyring(w io.Writer, k *api.Keyring) {
	held, primary := map[string]int{}, map[string]int{}
	var order []string
	answered := 0
	for _, ag := range k.Agents {
		if ag.Error != "" {
			continue
		}
		answered++
		for i, fp := range ag.Keys {
			if held[fp] == 0 {
				order = append(order, fp)
			}
			held[fp]++
			if i == 0 {
				primary[fp]++
			}
		}
	}
	// The key most agents encrypt with first.
	slices.SortStableFunc(order, func(a, b string) int { return primary[b] - primary[a] })
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY (fingerprint)\tHELD BY\tPRIMARY ON")
	for _, fp := range order {
		fmt.Fprintf(tw, "%s\t%d/%d agents\t%d\n", fp, held[fp], len(k.Agents), primary[fp])
	}
	_ = tw.Flush()
	for _, ag := range k.Agents {
		if ag.Error != "" {
			fmt.Fprintf(w, "agent %s: %s\n", ag.Name, ag.Error)
		}
	}
}

func keyringFailures(k *api.Keyring) []string {
	var out []string
	for _, ag := range k.Agents {
		if ag.Error != "" {
			out = append(out, ag.Name)
		}
	}
	return out
}
