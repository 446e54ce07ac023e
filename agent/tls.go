package agent

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync/atomic"

	"github.com/gpagent/gpagent/api"
)

// tlsConfigs are the agent's TLS settings, built once from its files:
// Raft and agent-to-agent calls use mutual TLS; the API also serves
// operators, who present a certificate or not. The agent's certificate
// is read through cert at each handshake, so a reload can rotate it
// without a restart; the CA stays as started.
type tlsConfigs struct {
	raft   *tls.Config // both ends verified
	server *tls.Config // API: verifies a client certificate when given
	client *tls.Config // calls to other agents, with this agent's certificate
	pool   *x509.CertPool
	cert   atomic.Pointer[tls.Certificate]
	// name is the agent's name: its certificate must be agent.<name>.
	name string
}

// loadTLS reads the CA, certificate and key files of the agent called
// name; errors name the field and the file.
func loadTLS(name, caFile, certFile, keyFile string) (*tlsConfigs, error) {
	ca, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("tls.ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("tls.ca_file %s: no PEM certificate in it", caFile)
	}
	t := &tlsConfigs{pool: pool, name: name}
	cert, err := t.loadPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	t.cert.Store(cert)
	base := tls.Config{
		GetCertificate:       func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return t.cert.Load(), nil },
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return t.cert.Load(), nil },
		RootCAs:              pool, ClientCAs: pool, MinVersion: tls.VersionTLS12,
	}
	t.raft, t.server, t.client = base.Clone(), base.Clone(), base.Clone()
	t.raft.ClientAuth = tls.RequireAndVerifyClientCert
	// Raft and calls to other agents talk only to agents: an operator's
	// certificate of the same CA is no Raft peer.
	t.raft.VerifyPeerCertificate = onlyAgents
	t.client.VerifyPeerCertificate = onlyAgents
	t.server.ClientAuth = tls.VerifyClientCertIfGiven
	return t, nil
}

// loadPair reads a certificate and its key and checks that it is this
// agent's (CN agent.<name>) and that the cluster CA the agent runs with
// vouches for it. Either fault would otherwise show only later and far
// away: the other agents refuse a certificate of another CA at every
// handshake, and take one named for another host as that host (its
// reports for this host's instances refused, the other host's accepted).
func (t *tlsConfigs) loadPair(certFile, keyFile string) (*tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("tls.cert_file/tls.key_file: %w", err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("tls.cert_file %s: %w", certFile, err)
	}
	if want := AgentCNPrefix + t.name; leaf.Subject.CommonName != want {
		return nil, fmt.Errorf("tls.cert_file %s: common name %q, want %q (gpagent tls cert create --agent %s)", certFile, leaf.Subject.CommonName, want, t.name)
	}
	inter := x509.NewCertPool()
	for _, der := range cert.Certificate[1:] {
		if c, err := x509.ParseCertificate(der); err == nil {
			inter.AddCert(c)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: t.pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, fmt.Errorf("tls.cert_file %s: not signed by the cluster CA the agent runs with: %w", certFile, err)
	}
	cert.Leaf = leaf
	return &cert, nil
}

// peerClient is a client for another agent's API.
//
// One client per address is kept: its connections are reused, so a
// report every second costs no new TCP connection (nor TLS handshake),
// and none is left idle behind.
func (a *Agent) peerClient(addr string) *api.Client {
	a.peersMu.Lock()
	defer a.peersMu.Unlock()
	if c, ok := a.peers[addr]; ok {
		return c
	}
	var tc *tls.Config
	if a.tls != nil {
		tc = a.tls.client
	}
	c := api.NewClientDialer(addr, tc, a.net.DialContext).WithToken(a.cfg.Token)
	if a.peers == nil {
		a.peers = map[string]*api.Client{}
	}
	a.peers[addr] = c
	return c
}

// onlyAgents refuses a verified peer whose certificate is not an agent's
// (CN agent.<host>).
func onlyAgents(_ [][]byte, chains [][]*x509.Certificate) error {
	if len(chains) == 0 || len(chains[0]) == 0 {
		return errors.New("no verified certificate")
	}
	if p := certPrincipal(chains[0][0]); p.kind != kindAgent {
		return fmt.Errorf("certificate %q is not an agent's (CN %s<host>)", chains[0][0].Subject.CommonName, AgentCNPrefix)
	}
	return nil
}
