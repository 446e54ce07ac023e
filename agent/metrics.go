package agent

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gpagent/gpagent/api"
	"github.com/gpagent/gpagent/supervisor"
	"github.com/gpagent/gpagent/topology"
)

// The agent's metrics are read at scrape time from what it already
// holds (the committed topology, its last reports and probes), so no
// loop has to update them. Cluster gauges are this agent's view:
// select the leader's with `and on(instance) gpagent_leader == 1`.
var (
	descConfigVersion = prometheus.NewDesc("gpagent_config_version", "Config version of the topology this agent has applied.", nil, nil)
	descLeader        = prometheus.NewDesc("gpagent_leader", "1 on the Raft leader.", nil, nil)
	descPaused        = prometheus.NewDesc("gpagent_failover_paused", "1 while automatic failover is paused (gpagent pause).", nil, nil)
	descFenced        = prometheus.NewDesc("gpagent_fenced", "1 while this agent has fenced its primaries (no quorum for longer than its lease).", nil, nil)
	descContentsDown  = prometheus.NewDesc("gpagent_contents_down", "Contents with no up primary.", nil, nil)
	descActing        = prometheus.NewDesc("gpagent_mirrors_acting_as_primary", "Instances whose preferred role is mirror acting as primary (gpagent recoverseg -r rebalances them).", nil, nil)

	descFailovers     = prometheus.NewDesc("gpagent_failovers_total", "Mirrors promoted by a topology change this agent committed as leader.", nil, nil)
	descFences        = prometheus.NewDesc("gpagent_fence_events_total", "Times this agent fenced its primaries because its lease ran out.", nil, nil)
	descRecoveries    = prometheus.NewDesc("gpagent_recoveries_total", "Recoveries of this host's instances that finished, by kind (incremental: pg_rewind, full: a copy).", []string{"kind"}, nil)
	descRecoveryBytes = prometheus.NewDesc("gpagent_recovery_bytes_total", "Bytes rewound or copied by the recoveries of this host's instances that finished, by kind.", []string{"kind"}, nil)
	descReports       = prometheus.NewDesc("gpagent_reports_received_total", "Reports this agent received as leader, by kind (full, heartbeat, and resend: a heartbeat naming a full report not held, answered resend).", []string{"kind"}, nil)
	descReconciles    = prometheus.NewDesc("gpagent_reconciles_total", "Reconciles this agent ran as leader, by outcome (decided; skipped: nothing it decides from had changed since one that found nothing to do).", []string{"outcome"}, nil)

	instanceLabels = []string{"dbid", "content"}
	descUp         = prometheus.NewDesc("gpagent_instance_up", "1 when this host's instance answered its last probe.", instanceLabels, nil)
	descPrimary    = prometheus.NewDesc("gpagent_instance_primary", "1 when the topology names this host's instance a primary, 0 a mirror.", instanceLabels, nil)
	descSynced     = prometheus.NewDesc("gpagent_instance_synchronized", "1 when the topology records the pair of this host's instance as in sync (mode s).", instanceLabels, nil)
	descLag        = prometheus.NewDesc("gpagent_instance_replication_lag_bytes", "How far this host's streaming mirror replays behind its primary's WAL.", instanceLabels, nil)
	descProbeAge   = prometheus.NewDesc("gpagent_instance_last_probe_age_seconds", "Time since this host's instance was last probed.", instanceLabels, nil)
)

// metricsRegistry is a registry the agent owns (no global one): gpagent's
// own metrics, the Go runtime's and the process's, and raft's and
// memberlist's through the process's go-metrics sink (gometrics.go).
func (a *Agent) metricsRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		agentCollector{a},
	)
	if sink, err := goMetricsSink(); err == nil {
		reg.MustRegister(sink)
	} else {
		a.log.Warn("raft and memberlist metrics are not served", "err", err)
	}
	return reg
}

// metricsHandler serves /metrics in Prometheus' text format.
func (a *Agent) metricsHandler() http.Handler {
	return promhttp.HandlerFor(a.metricsRegistry(), promhttp.HandlerOpts{})
}

type agentCollector struct{ a *Agent }

func (c agentCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descConfigVersion, descLeader, descPaused, descFenced, descContentsDown, descActing, descFailovers, descFences, descRecoveries, descRecoveryBytes, descReports, descReconciles, descUp, descPrimary, descSynced, descLag, descProbeAge} {
		ch <- d
	}
}

func (c agentCollector) Collect(ch chan<- prometheus.Metric) {
	a := c.a
	t := a.node.Topology()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	down, acting := clusterCounts(t)
	gauge(descConfigVersion, float64(t.ConfigVersion))
	gauge(descLeader, b2f(a.node.IsLeader()))
	gauge(descPaused, b2f(t.Paused))
	gauge(descFenced, b2f(a.lease.isFenced()))
	gauge(descContentsDown, float64(down))
	gauge(descActing, float64(acting))
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	n := &a.counts
	counter(descFailovers, n.failovers.Load())
	counter(descFences, n.fences.Load())
	counter(descRecoveries, n.rewinds.Load(), string(topology.RecoveryIncremental))
	counter(descRecoveries, n.copies.Load(), string(topology.RecoveryFull))
	counter(descRecoveryBytes, n.rewindBytes.Load(), string(topology.RecoveryIncremental))
	counter(descRecoveryBytes, n.copiedBytes.Load(), string(topology.RecoveryFull))
	counter(descReports, n.fullReports.Load(), "full")
	counter(descReports, n.heartbeats.Load(), "heartbeat")
	counter(descReports, n.resends.Load(), "resend")
	counter(descReconciles, n.reconcilesDecided.Load(), "decided")
	counter(descReconciles, n.reconcilesSkipped.Load(), "skipped")
	health := func(dbid int) *supervisor.Health {
		st := a.exec.state(dbid)
		a.exec.mu.Lock()
		defer a.exec.mu.Unlock()
		return st.health
	}
	for _, m := range instanceMetrics(t, a.cfg.Name, a.exec.lastReports(), health, a.clock.Now()) {
		gauge(m.desc, m.value, m.labels...)
	}
}

// clusterCounts returns the contents with no up primary and the mirrors
// acting as primary.
func clusterCounts(t *topology.Topology) (down, acting int) {
	for _, c := range t.Contents() {
		if p, ok := t.Primary(c); !ok || p.Status != topology.StatusUp {
			down++
		}
	}
	for _, s := range t.Segments {
		if s.Role == topology.RolePrimary && s.PreferredRole == topology.RoleMirror && s.Status == topology.StatusUp {
			acting++
		}
	}
	return down, acting
}

type sample struct {
	desc   *prometheus.Desc
	value  float64
	labels []string
}

// instanceMetrics are the samples of host's instances: their roles and
// modes from the topology, the rest from the last reports and probes.
func instanceMetrics(t *topology.Topology, host string, reports []api.InstanceReport, health func(dbid int) *supervisor.Health, now time.Time) []sample {
	byDBID := map[int]api.InstanceReport{}
	for _, r := range reports {
		byDBID[r.DBID] = r
	}
	var out []sample
	for _, s := range t.OnHost(host) {
		l := []string{strconv.Itoa(s.DBID), strconv.Itoa(s.Content)}
		r, reported := byDBID[s.DBID]
		out = append(out,
			sample{descUp, b2f(reported && r.Up), l},
			sample{descPrimary, b2f(s.Role == topology.RolePrimary), l},
			sample{descSynced, b2f(s.Mode == topology.ModeSynced), l})
		if reported && !r.Seen.IsZero() {
			out = append(out, sample{descProbeAge, now.Sub(r.Seen).Seconds(), l})
		}
		if h := health(s.DBID); s.Role == topology.RoleMirror && h != nil && h.InRecovery && h.Receiver != nil {
			out = append(out, sample{descLag, float64(replayLag(h)), l})
		}
	}
	return out
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
