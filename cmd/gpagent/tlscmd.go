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
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, err := randomSerial()
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: "gpagent CA " + serial.Text(16)[:8]},
		NotBefore: now.Add(-time.Minute), NotAfter: now.AddDate(0, 0, *days),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	certPath, keyPath := filepath.Join(*dir, caCertFile), filepath.Join(*dir, caKeyFile)
	if err := writePair(certPath, keyPath, der, key); err != nil {
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
	ca, err := tls.LoadX509KeyPair(*caPath, *caKeyPath)
	if err != nil {
		return fmt.Errorf("--ca %s and --ca-key %s: %w (gpagent tls ca create makes them)", *caPath, *caKeyPath, err)
	}
	caCert, err := x509.ParseCertificate(ca.Certificate[0])
	if err != nil {
		return fmt.Errorf("--ca %s: %w", *caPath, err)
	}
	if !caCert.IsCA {
		return fmt.Errorf("--ca %s: not a CA certificate", *caPath)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, err := randomSerial()
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		NotBefore:    now.Add(-time.Minute), NotAfter: now.AddDate(0, 0, *days),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
	}
	var name string
	if *host != "" {
		name = agent.AgentCNPrefix + *host
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
		tmpl.DNSNames = []string{*host, "localhost"}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		tmpl.DNSNames = append(tmpl.DNSNames, splitList(*dnsNames)...)
		for _, s := range splitList(*ips) {
			ip := net.ParseIP(s)
			if ip == nil {
				return fmt.Errorf("--ip: %q is not an IP address", s)
			}
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		}
	} else {
		if *ips != "" || *dnsNames != "" {
			return errors.New("--ip and --dns are for --agent certificates")
		}
		name = agent.OperatorCNPrefix + *op
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	tmpl.Subject = pkix.Name{CommonName: name}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, ca.PrivateKey)
	if err != nil {
		return fmt.Errorf("sign with --ca-key %s: %w", *caKeyPath, err)
	}
	certPath, keyPath := filepath.Join(*dir, name+".pem"), filepath.Join(*dir, name+"-key.pem")
	if err := writePair(certPath, keyPath, der, key); err != nil {
		return err
	}
	fmt.Fprintf(io.out, "==> certificate %s (CN %s)\n==> key %s\n", certPath, name, keyPath)
	return nil
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
