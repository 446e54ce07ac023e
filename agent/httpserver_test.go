package agent

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestAPIServerTimeouts: a caller that trickles its body is cut off by
// the read limit, an answer later than the write limit is not sent, and
// the data-file route's own longer limit lets its slow stream through.
func TestAPIServerTimeouts(t *testing.T) {
	to := serverTimeouts{header: time.Second, read: 300 * time.Millisecond, write: 300 * time.Millisecond, dataWrite: 5 * time.Second, idle: time.Second}
	slow := func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(2 * to.write) // the handler's work outlasts the write limit
		io.WriteString(w, "late answer")
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /body", func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			return
		}
		io.WriteString(w, "read it all")
	})
	mux.HandleFunc("GET /slow", slow)
	mux.HandleFunc("GET /data", writeDeadline(to.dataWrite, slow))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := newAPIServer(mux, to)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	addr := ln.Addr().String()

	t.Run("trickled body", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nab")
		// The server must give up on the body and close: the read returns
		// (EOF or a reset) well before this deadline, never times out.
		c.SetReadDeadline(time.Now().Add(10 * to.read))
		_, err = io.ReadAll(c)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("the server still holds a connection whose body never came, after %v", 10*to.read)
		}
	})
	get := func(path string) (string, error) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return "", err
		}
		defer c.Close()
		io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(to.dataWrite + 5*time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	t.Run("answer after the write limit", func(t *testing.T) {
		if body, err := get("/slow"); err == nil {
			t.Fatalf("got %q after the write limit; want the connection cut", body)
		}
	})
	t.Run("data route's own limit", func(t *testing.T) {
		if body, err := get("/data"); err != nil || !strings.Contains(body, "late answer") {
			t.Fatalf("data route: %q, %v; want its answer within its longer limit", body, err)
		}
	})
}
