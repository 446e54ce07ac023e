package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gpagent/gpagent/agent"
)

// createCA writes a new cluster CA into dir, valid for days, and returns
// the paths of its certificate and key.
func createCA(dir string, days int) (certPath, keyPath string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	serial, err := randomSerial()
	if err != nil {
		return "", "", err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: "gpagent CA " + serial.Text(16)[:8]},
		NotBefore: now.Add(-time.Minute), NotAfter: now.AddDate(0, 0, days),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", "", err
	}
	certPath, keyPath = filepath.Join(dir, caCertFile), filepath.Join(dir, caKeyFile)
	return certPath, keyPath, writePair(certPath, keyPath, der, key)
}

// The certificate verbs, as Consul's: `gpagent tls ca create` makes the
// cluster CA, `gpagent tls cert create --agent HOST` an agent's
// certificate (CN agent.HOST, server and client), `--operator NAME` an
// operator's (CN operator.NAME, client only). The agents tell the two
// kinds apart by the common name (agent/auth.go).

const (
	caCertFile = "gpagent-ca.pem"
	caKeyFile  = "gpagent-ca-key.pem"
)

func cmdTLS(io cmdIO, args []string) error {
	if len(args) < 2 || args[1] != "create" || (args[0] != "ca" && args[0] != "cert") {
		fmt.Fprintln(io.err, "usage: gpagent tls ca create [flags] | gpagent tls cert create --agent HOST | --operator NAME [flags]")
		return errUsage
	}
	if args[0] == "ca" {
		return cmdTLSCACreate(io, args[2:])
	}
	return cmdTLSCertCreate(io, args[2:])
}

func cmdTLSCACreate(io cmdIO, args []string) error {
	fs := newFlags(io, "tls ca create", "[--dir DIR] [--days N]")
	dir := fs.String("dir", ".", "folder to write "+caCertFile+" and "+caKeyFile+" into")
	days := fs.Int("days", 5*365, "days the CA is valid")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *days <= 0 {
		return fmt.Errorf("--days: %d is not positive", *days)
	}
	certPath, keyPath, err := createCA(*dir, *days)
	if err != nil {
		return err
	}
	fmt.Fprintf(io.out, "==> CA certificate %s\n==> CA key %s (keep it off the agents' hosts)\n", certPath, keyPath)
	return nil
}

func cmdTLSCertCreate(io cmdIO, args []string) error {
	fs := newFlags(io, "tls cert create", "--agent HOST | --operator NAME [--ip IP,...] [--dns NAME,...] [--ca FILE] [--ca-key FILE] [--dir DIR] [--days N]")
	host := fs.String("agent", "", "an agent's certificate for host HOST (its config's name)")
	op := fs.String("operator", "", "an operator's client certificate for NAME")
	ips := fs.String("ip", "", "comma-separated IP addresses the agent's API and Raft listen on (127.0.0.1 is always added)")
	dnsNames := fs.String("dns", "", "comma-separated DNS names of the agent (HOST and localhost are always added)")
	caPath := fs.String("ca", caCertFile, "the CA certificate")
	caKeyPath := fs.String("ca-key", caKeyFile, "the CA key")
	dir := fs.String("dir", ".", "folder to write the certificate and key into")
	days := fs.Int("days", 365, "days the certificate is valid")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if (*host == "") == (*op == "") {
		return errors.New("give --agent HOST or --operator NAME (one)")
	}
	if *days <= 0 {
		return fmt.Errorf("--days: %d is not positive", *days)
	}
	for flag, v := range map[string]string{"--agent": *host, "--operator": *op} {
		if strings.ContainsAny(v, " /:,") {
			return fmt.Errorf("%s: %q has a space, slash, colon or comma", flag, v)
		}
	}
	if *op != "" && (*ips != "" || *dnsNames != "") {
		return errors.New("--ip and --dns are for --agent certificates")
	}
	var ipList []net.IP
	for _, x := range splitList(*ips) {
		ip := net.ParseIP(x)
		if ip == nil {
			return fmt.Errorf("--ip: %q is not an IP address", x)
		}
		ipList = append(ipList, ip)
	}
	certReq := certRequest{agent: *host, operator: *op, ips: ipList, dns: splitList(*dnsNames), days: *days}
	name, certPath, keyPath, err := createCert(*caPath, *caKeyPath, *dir, certReq)
	if err != nil {
		return err
	}
	fmt.Fprintf(io.out, "==> certificate %s (CN %s)\n==> key %s\n", certPath, name, keyPath)
	return nil
}

// certRequest is what one certificate is for: an agent (with the IPs
// and DNS names its API and Raft are reached at) or an operator.
type certRequest struct {
	agent, operator string
	ips             []net.IP
	dns             []string
	days            int
}

// createCert signs a certificate with the CA of caPath and caKeyPath and
// writes it and its key into dir as <CN>.pem and <CN>-key.pem.
func createCert(caPath, caKeyPath, dir string, req certRequest) (name, certPath, keyPath string, err error) {
	ca, err := tls.LoadX509KeyPair(caPath, caKeyPath)
	if err != nil {
		return "", "", "", fmt.Errorf("--ca %s and --ca-key %s: %w (gpagent tls ca create makes them)", caPath, caKeyPath, err)
	}
	caCert, err := x509.ParseCertificate(ca.Certificate[0])
	if err != nil {
		return "", "", "", fmt.Errorf("--ca %s: %w", caPath, err)
	}
	if !caCert.IsCA {
		return "", "", "", fmt.Errorf("--ca %s: not a CA certificate", caPath)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", "", err
	}
	serial, err := randomSerial()
	if err != nil {
		return "", "", "", err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		NotBefore:    now.Add(-time.Minute), NotAfter: now.AddDate(0, 0, req.days),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
	}
	if req.agent != "" {
		name = agent.AgentCNPrefix + req.agent
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
		tmpl.DNSNames = append([]string{req.agent, "localhost"}, req.dns...)
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		for _, ip := range req.ips {
			if !ip.Equal(tmpl.IPAddresses[0]) {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			}
		}
	} else {
		name = agent.OperatorCNPrefix + req.operator
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	tmpl.Subject = pkix.Name{CommonName: name}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, ca.PrivateKey)
	if err != nil {
		return "", "", "", fmt.Errorf("sign with --ca-key %s: %w", caKeyPath, err)
	}
	certPath, keyPath = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	return name, certPath, keyPath, writePair(certPath, keyPath, der, key)
}

func splitList(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

func randomSerial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

// writePair writes a certificate (0644) and its key (0600), refusing to
// overwrite either: a new CA over an old one would cut off every agent.
func writePair(certPath, keyPath string, der []byte, key *ecdsa.PrivateKey) error {
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	for _, p := range []string{certPath, keyPath} {
		if _, err := os.Stat(p); err == nil {
			return fmt.Errorf("%s exists: not overwritten", p)
		}
	}
	if err := writeNew(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	return writeNew(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	return f.Close()
}

// cmdKeygen prints 32 random bytes in base64: a gossip key (a line of
// gossip_key_file) or a cluster token (token_file), as `consul keygen`.
func cmdKeygen(io cmdIO, args []string) error {
	fs := newFlags(io, "keygen", "")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return err
	}
	fmt.Fprintln(io.out, base64.StdEncoding.EncodeToString(key))
	return nil
}
