package consensus

import (
	"context"
	"crypto/tls"
	"net"
	"time"
)

// Raft over mutual TLS (Config.TLS): both ends present a certificate
// signed by the cluster CA, so a host outside the cluster can neither read
// the log nor append to it. newTransport wraps the listener with
// tls.NewListener and every dial with tlsDial, whichever listener and
// dialer carry the bytes underneath.

// tlsDial runs a TLS client handshake over each connection dial opens,
// the way tls.DialWithDialer does: the server name defaults to the
// address's host, and the handshake shares the dial's timeout.
func tlsDial(dial DialFunc, cfg *tls.Config) DialFunc {
	return func(address string, timeout time.Duration) (net.Conn, error) {
		start := time.Now()
		raw, err := dial(address, timeout)
		if err != nil {
			return nil, err
		}
		c := cfg
		if c.ServerName == "" {
			host, _, err := net.SplitHostPort(address)
			if err != nil {
				host = address
			}
			c = cfg.Clone()
			c.ServerName = host
		}
		conn := tls.Client(raw, c)
		ctx, cancel := context.Background(), context.CancelFunc(func() {})
		if timeout > 0 {
			ctx, cancel = context.WithDeadline(ctx, start.Add(timeout))
		}
		defer cancel()
		if err := conn.HandshakeContext(ctx); err != nil {
			_ = raw.Close()
			return nil, err
		}
		return conn, nil
	}
}
