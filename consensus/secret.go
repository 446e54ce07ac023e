package consensus

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// Raft under a shared secret (Config.Secret), for a cluster without TLS:
// every Raft connection starts with a mutual challenge-response keyed by
// the secret (the cluster token), so that a process that reaches the Raft
// port but does not hold the token can neither read the log nor append
// to it, vote, or install a snapshot. It authenticates the two ends of a
// connection only: the stream after it is neither encrypted nor
// integrity-protected, so whoever can read or rewrite the traffic between
// two agents can still read or forge Raft messages. TLS closes that.
//
// The exchange, N a 32-byte random nonce and MAC HMAC-SHA256 under a key
// derived from the secret:
//
//	client -> server  magic, Nc
//	server -> client  Ns, MAC("server", Nc, Ns)
//	client -> server  MAC("client", Ns, Nc)
//
// Each side proves it holds the key over the other's fresh nonce; the
// labels keep an answer of one side from serving as the other's.

const (
	secretMagic     = "gpagent raft hmac v1\n"
	secretNonceLen  = 32
	secretMACLen    = sha256.Size
	secretHandshake = 10 * time.Second // a server-side handshake's bound
)

// errNotMember is a peer that does not hold the cluster token.
var errNotMember = errors.New("the peer does not hold the cluster token")

// secretKey derives the handshake key from the secret, so the token
// itself is used for nothing but this derivation here.
func secretKey(secret []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("gpagent raft stream key"))
	return m.Sum(nil)
}

func secretMAC(key []byte, label string, first, second []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(label))
	m.Write(first)
	m.Write(second)
	return m.Sum(nil)
}

func nonce() ([]byte, error) {
	n := make([]byte, secretNonceLen)
	if _, err := rand.Read(n); err != nil {
		return nil, err
	}
	return n, nil
}

// secretDial runs the client side of the handshake over each connection
// dial opens, within the dial's timeout.
func secretDial(dial DialFunc, key []byte) DialFunc {
	return func(address string, timeout time.Duration) (net.Conn, error) {
		start := time.Now()
		conn, err := dial(address, timeout)
		if err != nil {
			return nil, err
		}
		if timeout <= 0 {
			timeout = secretHandshake
		}
		_ = conn.SetDeadline(start.Add(timeout))
		if err := clientHandshake(conn, key); err != nil {
			_ = conn.Close()
			return nil, fmt.Errorf("raft handshake with %s: %w", address, err)
		}
		_ = conn.SetDeadline(time.Time{})
		return conn, nil
	}
}

func clientHandshake(conn net.Conn, key []byte) error {
	nc, err := nonce()
	if err != nil {
		return err
	}
	if _, err := conn.Write(append([]byte(secretMagic), nc...)); err != nil {
		return err
	}
	reply := make([]byte, secretNonceLen+secretMACLen)
	if _, err := io.ReadFull(conn, reply); err != nil {
		return fmt.Errorf("no answer to the challenge (a peer without the cluster token, or with TLS): %w", err)
	}
	ns, proof := reply[:secretNonceLen], reply[secretNonceLen:]
	if !hmac.Equal(proof, secretMAC(key, "server", nc, ns)) {
		return errNotMember
	}
	_, err = conn.Write(secretMAC(key, "client", ns, nc))
	return err
}

// secretListener hands out connections whose first Read or Write runs
// the server side of the handshake. Not in Accept: raft accepts one
// connection at a time, and a peer that stalls its handshake would hold
// up every other (as tls.NewListener, for the same reason).
type secretListener struct {
	net.Listener
	key []byte
}

func (l *secretListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &secretConn{Conn: c, key: l.key}, nil
}

type secretConn struct {
	net.Conn
	key  []byte
	once sync.Once
	err  error
}

func (c *secretConn) handshake() error {
	c.once.Do(func() {
		_ = c.Conn.SetDeadline(time.Now().Add(secretHandshake))
		if c.err = serverHandshake(c.Conn, c.key); c.err != nil {
			_ = c.Conn.Close()
			return
		}
		_ = c.Conn.SetDeadline(time.Time{})
	})
	return c.err
}

func (c *secretConn) Read(p []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

func (c *secretConn) Write(p []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

func serverHandshake(conn net.Conn, key []byte) error {
	hello := make([]byte, len(secretMagic)+secretNonceLen)
	if _, err := io.ReadFull(conn, hello); err != nil {
		return fmt.Errorf("raft handshake from %s: %w", conn.RemoteAddr(), err)
	}
	if string(hello[:len(secretMagic)]) != secretMagic {
		return fmt.Errorf("raft handshake from %s: not a gpagent agent with the cluster token", conn.RemoteAddr())
	}
	nc := hello[len(secretMagic):]
	ns, err := nonce()
	if err != nil {
		return err
	}
	if _, err := conn.Write(append(ns, secretMAC(key, "server", nc, ns)...)); err != nil {
		return err
	}
	proof := make([]byte, secretMACLen)
	if _, err := io.ReadFull(conn, proof); err != nil {
		return fmt.Errorf("raft handshake from %s: %w", conn.RemoteAddr(), err)
	}
	if !hmac.Equal(proof, secretMAC(key, "client", ns, nc)) {
		return fmt.Errorf("raft handshake from %s: %w", conn.RemoteAddr(), errNotMember)
	}
	return nil
}
