package simnet

// Faults applies cuts to some kinds of traffic; Net's own methods apply
// them to all kinds. Faults add up: cutting Raft, then Gossip, between
// the same hosts cuts both, until Heal.
type Faults struct {
	n     *Net
	kinds Kind
}

// Only is the faults of the given kinds: n.Only(simnet.Raft).Isolate(ip)
// cuts ip's Raft traffic and leaves its API and gossip alone.
func (n *Net) Only(k Kind) Faults { return Faults{n: n, kinds: k} }

// Cut cuts every kind between hosts a and b, both ways.
func (n *Net) Cut(a, b string) { n.Only(All).Cut(a, b) }

// Isolate cuts every kind between ip and every other host.
func (n *Net) Isolate(ip string) { n.Only(All).Isolate(ip) }

// Partition cuts every kind between hosts in different groups.
func (n *Net) Partition(groups ...[]string) { n.Only(All).Partition(groups...) }

// Heal removes every fault.
func (n *Net) Heal() { n.Only(All).Heal() }

// Cut cuts f's kinds between a and b, both ways. A bridge (A sees B and
// C, which do not see each other) is Cut(B, C).
func (f Faults) Cut(a, b string) {
	f.apply(func() {
		l := linkOf(canon(a), canon(b))
		f.n.links[l] |= f.kinds
	})
}

// Isolate cuts f's kinds between ip and every other host, also the hosts
// made after it. The test process (an IP that is not a Host) still
// reaches it.
func (f Faults) Isolate(ip string) {
	f.apply(func() { f.n.isolated[canon(ip)] |= f.kinds })
}

// Partition cuts f's kinds between every two hosts of different groups
// (a majority/minority split is Partition(majority, minority)). Hosts in
// no group keep their links.
func (f Faults) Partition(groups ...[]string) {
	f.apply(func() {
		for i, g := range groups {
			for _, other := range groups[i+1:] {
				for _, a := range g {
					for _, b := range other {
						l := linkOf(canon(a), canon(b))
						f.n.links[l] |= f.kinds
					}
				}
			}
		}
	})
}

// Heal lifts every fault of f's kinds; new dials and packets pass at
// once (closed connections stay closed: their owners redial).
func (f Faults) Heal() {
	n := f.n
	n.mu.Lock()
	defer n.mu.Unlock()
	for l, k := range n.links {
		if k &^= f.kinds; k == 0 {
			delete(n.links, l)
		} else {
			n.links[l] = k
		}
	}
	for ip, k := range n.isolated {
		if k &^= f.kinds; k == 0 {
			delete(n.isolated, ip)
		} else {
			n.isolated[ip] = k
		}
	}
}

func (f Faults) apply(change func()) {
	f.n.mu.Lock()
	change()
	f.n.mu.Unlock()
	f.n.log.Debug("fault applied", "kinds", f.kinds)
	f.n.closeCut()
}
