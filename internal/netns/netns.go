// Package netns lays a few simulated hosts over one Linux machine: one
// network namespace per host, each joined by a veth pair to a bridge in
// the root namespace, with addresses in a free 10.213.X.0/24. A host can
// be cut off from the other hosts (blackhole routes in the namespaces)
// while the root namespace, through the bridge's own address .254, still
// reaches every host: the process measuring a partition is never part of
// it. It drives iproute2's `ip` and needs root.
//
// cluster.go lays a gpagent cluster over such a network: its files and
// one agent per namespace.
package netns

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

const (
	// SubnetPrefix is the /16 the networks take their /24 from.
	SubnetPrefix = "10.213"
	// BridgeOctet is the last octet of the bridge's (the root namespace's)
	// address in the subnet; host k (1-based) has .k.
	BridgeOctet = 254
	// ipTimeout bounds one `ip` command: none should take more than a
	// moment, but a wedged netlink must not hang a benchmark or a test.
	ipTimeout = 15 * time.Second
	// maxLinkName is IFNAMSIZ-1, the longest Linux interface name.
	maxLinkName = 15
)

// Host is one simulated host: a namespace and its address.
type Host struct {
	Name string // mdw, sdw1, ...
	NS   string // the network namespace
	Addr string // 10.213.X.k
	Veth string // the root-namespace end of its veth pair
}

// Command is `ip netns exec NS name args...`: ip execs name in place
// inside the namespace, so the process's pid is name's own. A host with
// no NS is in the root namespace (gpbench scale's real hosts, each on its
// own loopback address): name runs as it is.
func (h *Host) Command(ctx context.Context, name string, arg ...string) *exec.Cmd {
	if h.NS == "" {
		return exec.CommandContext(ctx, name, arg...)
	}
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.NS, name}, arg...)...)
}

// Options describe a network to build.
type Options struct {
	// Prefix starts the name of every namespace and link of the network
	// (namespaces PREFIXh1.., veths PREFIXv1.., bridge PREFIXbr). It must
	// be unique among the networks alive on the machine: Build removes
	// whatever already carries it, as left over by an earlier run that
	// crashed. See Prefix.
	Prefix string
	// Hosts are the host names; the k-th (1-based) gets address .k.
	Hosts []string
	// Seed is where the search for a free 10.213.X.0/24 starts, so that
	// networks built at the same time tend to try different subnets.
	Seed int
	// Logf, if set, is told about leftovers removed.
	Logf func(format string, args ...any)
}

// Prefix is a name prefix unique to this process and seq (taken modulo
// 26): tag, the full pid (a live process's pid is its own, so a prefix
// of another live process is never mistaken for a leftover), and a letter.
// With a 3-letter tag it leaves room for up to 99 hosts within Linux's
// 15-character interface names.
func Prefix(tag string, seq int) string {
	return fmt.Sprintf("%s%d%c", tag, os.Getpid(), 'a'+rune(seq%26))
}

// Network is a built network. Its methods may be called concurrently.
type Network struct {
	Prefix string
	Bridge string
	Subnet string // "10.213.X"
	Hosts  []*Host

	mu  sync.Mutex
	cut map[string][]route // host -> the blackhole routes that isolate it
}

type route struct{ ns, dst string }

// Available says, in one line, why this process cannot build networks,
// or nil if it can.
func Available() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("network namespaces, veth pairs and a bridge need root (euid %d)", os.Geteuid())
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return fmt.Errorf("iproute2's `ip` is not on PATH: %w", err)
	}
	return nil
}

// Build removes leftovers carrying o.Prefix, picks a free subnet and
// creates the bridge and one namespace and veth pair per host. On error it
// removes whatever it had created.
func Build(ctx context.Context, o Options) (n *Network, err error) {
	if o.Prefix == "" || len(o.Hosts) == 0 {
		return nil, errors.New("netns: a prefix and at least one host are needed")
	}
	if longest := len(o.Prefix) + len(fmt.Sprintf("v%dp", len(o.Hosts))); longest > maxLinkName {
		return nil, fmt.Errorf("netns: prefix %q too long: link names would have %d characters, Linux allows %d", o.Prefix, longest, maxLinkName)
	}
	if err := RemoveLeftovers(ctx, o.Prefix, o.Logf); err != nil {
		return nil, err
	}
	n = &Network{Prefix: o.Prefix, Bridge: o.Prefix + "br", cut: map[string][]route{}}
	for i, name := range o.Hosts {
		k := i + 1
		n.Hosts = append(n.Hosts, &Host{
			Name: name,
			NS:   fmt.Sprintf("%sh%d", o.Prefix, k),
			Veth: fmt.Sprintf("%sv%d", o.Prefix, k),
		})
	}
	defer func() {
		if err != nil {
			if cerr := n.Close(); cerr != nil {
				err = fmt.Errorf("%w (and removing what was built: %v)", err, cerr)
			}
			n = nil
		}
	}()
	if err := ipRun(ctx, "link", "add", n.Bridge, "type", "bridge"); err != nil {
		return n, err
	}
	if n.Subnet, err = claimSubnet(ctx, n.Bridge, o.Seed); err != nil {
		return n, err
	}
	if err := ipRun(ctx, "link", "set", n.Bridge, "up"); err != nil {
		return n, err
	}
	for k, h := range n.Hosts {
		h.Addr = fmt.Sprintf("%s.%d", n.Subnet, k+1)
		peer := h.Veth + "p"
		for _, args := range [][]string{
			{"netns", "add", h.NS},
			{"-n", h.NS, "link", "set", "lo", "up"},
			{"link", "add", h.Veth, "type", "veth", "peer", "name", peer},
			{"link", "set", peer, "netns", h.NS},
			{"-n", h.NS, "link", "set", peer, "name", "eth0"},
			{"-n", h.NS, "addr", "add", h.Addr + "/24", "dev", "eth0"},
			{"-n", h.NS, "link", "set", "eth0", "up"},
			{"link", "set", h.Veth, "master", n.Bridge},
			{"link", "set", h.Veth, "up"},
		} {
			if err := ipRun(ctx, args...); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

// BridgeAddr is the root namespace's address in the subnet.
func (n *Network) BridgeAddr() string { return fmt.Sprintf("%s.%d", n.Subnet, BridgeOctet) }

// Host is the host of that name, or nil.
func (n *Network) Host(name string) *Host {
	for _, h := range n.Hosts {
		if h.Name == name {
			return h
		}
	}
	return nil
}

// Partition cuts host off from the other hosts, not from the root
// namespace: blackhole routes in its namespace to every other host, and in
// theirs to it. Both directions: with routes on one side only, UDP gossip
// from the others would still arrive at the isolated host. It returns once
// every route is in place; on error the routes added so far stay recorded,
// for Heal.
func (n *Network) Partition(ctx context.Context, host string) error {
	h := n.Host(host)
	if h == nil {
		return fmt.Errorf("netns: partition: no host %q", host)
	}
	var routes []route
	for _, o := range n.Hosts {
		if o != h {
			routes = append(routes, route{ns: h.NS, dst: o.Addr + "/32"}, route{ns: o.NS, dst: h.Addr + "/32"})
		}
	}
	for _, r := range routes {
		if err := ipRun(ctx, "-n", r.ns, "route", "add", "blackhole", r.dst); err != nil {
			return fmt.Errorf("partition %s: %w", host, err)
		}
		n.mu.Lock()
		n.cut[host] = append(n.cut[host], r)
		n.mu.Unlock()
	}
	return nil
}

// Heal removes the routes Partition added for host; a no-op for a host
// not cut off.
func (n *Network) Heal(ctx context.Context, host string) error {
	n.mu.Lock()
	routes := n.cut[host]
	delete(n.cut, host)
	n.mu.Unlock()
	var errs []error
	for _, r := range routes {
		if err := ipRun(ctx, "-n", r.ns, "route", "del", "blackhole", r.dst); err != nil {
			errs = append(errs, fmt.Errorf("heal %s: %w", host, err))
		}
	}
	return errors.Join(errs...)
}

// Close deletes the namespaces (their veth ends, and so the pairs, go
// with them) and the bridge. Stop the processes inside first: a process
// keeps its namespace's stack alive after the name is gone.
func (n *Network) Close() error {
	ctx := context.Background()
	var errs []error
	existing := map[string]bool{}
	if out, err := ip(ctx, "netns", "list"); err == nil {
		for _, ns := range nsNames(out) {
			existing[ns] = true
		}
	} else {
		errs = append(errs, err)
	}
	for _, h := range n.Hosts {
		if !existing[h.NS] {
			continue // never created (a failed Build)
		}
		if err := ipRun(ctx, "netns", "del", h.NS); err != nil {
			errs = append(errs, err)
		}
	}
	links, err := rootLinks(ctx)
	if err != nil {
		errs = append(errs, err)
	}
	for _, l := range links {
		for _, h := range n.Hosts {
			// Normally gone with its peer's namespace; a Build that failed
			// between creating the pair and moving the peer leaves it.
			if l == h.Veth || l == h.Veth+"p" {
				if err := delLink(ctx, l); err != nil {
					errs = append(errs, err)
				}
			}
		}
		if l == n.Bridge {
			if err := ipRun(ctx, "link", "del", n.Bridge); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// RemoveLeftovers deletes the namespaces and root-namespace links whose
// names start with prefix: those of an earlier run with the same prefix
// that did not clean up.
func RemoveLeftovers(ctx context.Context, prefix string, logf func(format string, args ...any)) error {
	if prefix == "" {
		return errors.New("netns: empty prefix")
	}
	if logf == nil {
		logf = func(string, ...any) {}
	}
	out, err := ip(ctx, "netns", "list")
	if err != nil {
		return err
	}
	var errs []error
	for _, ns := range nsNames(out) {
		if strings.HasPrefix(ns, prefix) {
			logf("netns: removing leftover namespace %s", ns)
			if err := ipRun(ctx, "netns", "del", ns); err != nil {
				errs = append(errs, err)
			}
		}
	}
	links, err := rootLinks(ctx)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, l := range links {
		if strings.HasPrefix(l, prefix) {
			logf("netns: removing leftover link %s", l)
			if err := delLink(ctx, l); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// delLink deletes a root-namespace link. One already gone is no error: a
// namespace's deletion takes its veth pairs with it, but asynchronously,
// so a pair listed just after may be gone a moment later.
func delLink(ctx context.Context, name string) error {
	err := ipRun(ctx, "link", "del", name)
	if err == nil {
		return nil
	}
	if ipRun(ctx, "link", "show", name) != nil {
		return nil
	}
	return err
}

// nsNames reads `ip netns list`: "name" or "name (id: 3)" a line.
func nsNames(out string) []string {
	var names []string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	return names
}

// rootLinks lists the link names of the root namespace.
func rootLinks(ctx context.Context) ([]string, error) {
	out, err := ip(ctx, "-o", "link", "show")
	if err != nil {
		return nil, err
	}
	var names []string
	for _, line := range strings.Split(out, "\n") {
		// "12: name@if11: <BROADCAST,...> ..."
		f := strings.SplitN(line, ":", 3)
		if len(f) < 3 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSpace(f[1]), "@")
		names = append(names, name)
	}
	return names, nil
}

// claimSubnet gives bridge the address .254 in the first 10.213.X.0/24,
// from seed on, that no address or route of the root namespace uses yet.
// Looking and taking are two steps, so a network built at the same moment
// may take the same subnet: after taking it, it looks again and moves on
// when the address is not the only one in the subnet.
func claimSubnet(ctx context.Context, bridge string, seed int) (string, error) {
	if seed < 0 {
		seed = -seed
	}
	for i := range 250 {
		subnet := fmt.Sprintf("%s.%d", SubnetPrefix, (seed+i)%250+1)
		used, err := subnetUsed(ctx, subnet)
		if err != nil {
			return "", err
		}
		if used {
			continue
		}
		cidr := fmt.Sprintf("%s.%d/24", subnet, BridgeOctet)
		if err := ipRun(ctx, "addr", "add", cidr, "dev", bridge); err != nil {
			return "", err
		}
		devs, err := subnetDevices(ctx, subnet)
		if err != nil {
			return "", err
		}
		if len(devs) == 1 && devs[0] == bridge {
			return subnet, nil
		}
		if err := ipRun(ctx, "addr", "del", cidr, "dev", bridge); err != nil {
			return "", err
		}
	}
	return "", fmt.Errorf("netns: no free %s.X.0/24 subnet", SubnetPrefix)
}

// subnetUsed: an address of the root namespace in subnet.0/24, or a
// route into it (or into anything narrower within 10.213).
func subnetUsed(ctx context.Context, subnet string) (bool, error) {
	devs, err := subnetDevices(ctx, subnet)
	if err != nil {
		return false, err
	}
	if len(devs) > 0 {
		return true, nil
	}
	routes, err := ip(ctx, "-4", "route", "show", "table", "all", "to", "match", subnet+".1")
	if err != nil {
		return false, err
	}
	for _, r := range strings.Split(routes, "\n") {
		// The default route matches everything; only a route within
		// 10.213 means someone uses it.
		if r = strings.TrimSpace(r); r != "" && strings.Contains(r, SubnetPrefix+".") {
			return true, nil
		}
	}
	return false, nil
}

// subnetDevices lists the root-namespace devices with an address in
// subnet.0/24.
func subnetDevices(ctx context.Context, subnet string) ([]string, error) {
	out, err := ip(ctx, "-4", "-o", "addr", "show", "to", subnet+".0/24")
	if err != nil {
		return nil, err
	}
	var devs []string
	for _, line := range strings.Split(out, "\n") {
		// "7: gpa123abr    inet 10.213.5.254/24 scope global ..."
		if f := strings.Fields(line); len(f) >= 2 {
			devs = append(devs, f[1])
		}
	}
	return devs, nil
}

// ip runs `ip args...` and returns its output; its error names the
// command and carries ip's message.
func ip(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, ipTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

func ipRun(ctx context.Context, args ...string) error {
	_, err := ip(ctx, args...)
	return err
}
