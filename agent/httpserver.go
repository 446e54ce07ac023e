package agent

import (
	"net/http"
	"time"
)

// serverTimeouts bound how long a client may hold the API server's
// resources. Before them the server had only a header timeout: a caller
// that sent its body a byte a minute, or never read the answer, kept a
// goroutine and a connection for ever.
type serverTimeouts struct {
	// header: the request line and headers.
	header time.Duration
	// read: the whole request, body included. Every body is a small JSON
	// document (the largest a plan or a list of file ranges).
	read time.Duration
	// write: from the end of the headers to the end of the answer, the
	// handler's work included. Above the client's own 60 s limit
	// (api.Client) and a forwarding hop to the leader, so a slow but
	// live answer is never cut by the server first.
	write time.Duration
	// dataWrite: the write limit of the data-file route, which streams
	// ranges of data files (many megabytes) to a mirror being built.
	dataWrite time.Duration
	// idle: a kept-alive connection with no request.
	idle time.Duration
}

var defaultServerTimeouts = serverTimeouts{
	header:    10 * time.Second,
	read:      30 * time.Second,
	write:     90 * time.Second,
	dataWrite: 10 * time.Minute,
	idle:      2 * time.Minute,
}

func newAPIServer(h http.Handler, to serverTimeouts) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: to.header,
		ReadTimeout:       to.read,
		WriteTimeout:      to.write,
		IdleTimeout:       to.idle,
	}
}

// writeDeadline gives one route its own write limit (d from now; no limit
// when d is 0) in place of the server's: the data-file stream needs
// longer, the debug profiles as long as they were asked to run.
func writeDeadline(d time.Duration, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var at time.Time
		if d > 0 {
			at = time.Now().Add(d)
		}
		// An error means the writer cannot change deadlines (a test
		// recorder); the server's limit then stays.
		_ = http.NewResponseController(w).SetWriteDeadline(at)
		h(w, r)
	}
}
