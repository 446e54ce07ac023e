package agent

import (
	"fmt"
	"sync"
	"time"

	gometrics "github.com/hashicorp/go-metrics"
	gometricsprom "github.com/hashicorp/go-metrics/prometheus"
	"github.com/prometheus/client_golang/prometheus"
)

// hashicorp/raft and memberlist emit their metrics (raft_*, memberlist_*)
// through go-metrics' process-global sink; there is no per-instance one
// to hand them. So the sink is made once per process and every agent's
// registry collects it. One agent runs per process in production; the
// in-process tests run several, which then share one set of raft and
// memberlist series (each agent's /metrics shows all of them), and no
// agent replaces another's sink or registers a name twice.
var (
	raftSinkOnce sync.Once
	raftSink     *gometricsprom.PrometheusSink
	raftSinkErr  error
)

// goMetricsSink returns the process's go-metrics sink, making it global
// on first use.
func goMetricsSink() (*gometricsprom.PrometheusSink, error) {
	raftSinkOnce.Do(func() {
		// The sink registers itself; on a registry of its own rather
		// than the global default, which gpagent does not serve.
		sink, err := gometricsprom.NewPrometheusSinkFrom(gometricsprom.PrometheusOpts{
			Expiration: time.Minute,
			Registerer: prometheus.NewRegistry(),
			Name:       "gpagent_gometrics_sink",
		})
		if err != nil {
			raftSinkErr = fmt.Errorf("go-metrics prometheus sink: %w", err)
			return
		}
		conf := gometrics.DefaultConfig("")
		// Names as raft and memberlist give them (raft_apply, not
		// host_raft_apply); client_golang reports the Go runtime.
		conf.EnableHostname = false
		conf.EnableRuntimeMetrics = false
		conf.EnableServiceLabel = false
		if _, err := gometrics.NewGlobal(conf, sink); err != nil {
			raftSinkErr = fmt.Errorf("go-metrics: %w", err)
			return
		}
		raftSink = sink
	})
	return raftSink, raftSinkErr
}
