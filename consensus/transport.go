package consensus

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// DialFunc opens a connection to a peer's raft address within timeout.
type DialFunc func(address string, timeout time.Duration) (net.Conn, error)

// streamLayer is raft's stream layer over any listener and dialer: the
// ones cfg hands in (a test's network that can cut a link), or a plain
// TCP listener when only the dialer is replaced, optionally under TLS.
type streamLayer struct {
	net.Listener
	advertise net.Addr
	dial      DialFunc
}

func (l *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return l.dial(string(address), timeout)
}

func (l *streamLayer) Addr() net.Addr {
	if l.advertise != nil {
		return l.advertise
	}
	return l.Listener.Addr()
}

func dialTCP(address string, timeout time.Duration) (net.Conn, error) {
	return net.DialTimeout("tcp", address, timeout)
}

// newTransport builds raft's network transport: plain TCP on BindAddr
// when cfg hooks nothing (raft's own TCP transport), else a stream layer
// over cfg.Listener (or a listener on BindAddr) and cfg.Dial (or a TCP
// dial), with mutual TLS on top when cfg.TLS is set, or the secret's
// handshake when cfg.Secret is. It takes ownership
// of cfg.Listener: closed when it fails, by the transport's Close after.
func newTransport(cfg Config, advertise net.Addr, logger hclog.Logger) (*raft.NetworkTransport, error) {
	if cfg.TLS != nil && len(cfg.Secret) > 0 {
		closeListener(cfg.Listener)
		return nil, errors.New("raft: TLS or a secret, not both")
	}
	if cfg.Listener == nil && cfg.Dial == nil && cfg.TLS == nil && len(cfg.Secret) == 0 {
		return raft.NewTCPTransportWithLogger(cfg.BindAddr, advertise, transportMaxPool, transportTimeout, logger)
	}
	if cfg.TLS != nil && cfg.TLS.ClientAuth != tls.RequireAndVerifyClientCert {
		closeListener(cfg.Listener)
		return nil, errors.New("raft TLS config must require and verify client certificates")
	}
	ln, dial := cfg.Listener, DialFunc(cfg.Dial)
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", cfg.BindAddr); err != nil {
			return nil, err
		}
	}
	if dial == nil {
		dial = dialTCP
	}
	if advertise == nil {
		if a, ok := ln.Addr().(*net.TCPAddr); ok && a.IP.IsUnspecified() {
			_ = ln.Close()
			return nil, fmt.Errorf("local bind address %s is not advertisable", a)
		}
	}
	if cfg.TLS != nil {
		ln, dial = tls.NewListener(ln, cfg.TLS), tlsDial(dial, cfg.TLS)
	}
	if len(cfg.Secret) > 0 {
		key := secretKey(cfg.Secret)
		ln, dial = &secretListener{Listener: ln, key: key}, secretDial(dial, key)
	}
	return raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  &streamLayer{Listener: ln, advertise: advertise, dial: dial},
		MaxPool: transportMaxPool,
		Timeout: transportTimeout,
		Logger:  logger,
	}), nil
}

func closeListener(ln net.Listener) {
	if ln != nil {
		_ = ln.Close()
	}
}

// transportAddr names where the transport listens, for errors.
func transportAddr(cfg Config) string {
	if cfg.Listener != nil {
		return cfg.Listener.Addr().String()
	}
	return cfg.BindAddr
}
