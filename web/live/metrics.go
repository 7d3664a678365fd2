package live

import "github.com/prometheus/client_golang/prometheus"

// metrics are the hub's counters on /metrics (a no-op registry when none is given).
type metrics struct {
	connections prometheus.Gauge
	events      prometheus.Counter
	deliveries  prometheus.Counter
	dropped     *prometheus.CounterVec
	blocked     prometheus.Counter
	staleChecks *prometheus.CounterVec
	// emitOverflow counts the events that found their stream's emit queue full.
	emitOverflow *prometheus.CounterVec
	// logRestarts counts the streams whose event log restarted (Record.Reset).
	logRestarts prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "livecart_live_connections", Help: "Open websocket connections on this node."}),
		events: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "livecart_live_events_total", Help: "Stream events received from the bus on this node."}),
		deliveries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "livecart_live_deliveries_total", Help: "Event frames queued to connections on this node."}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "livecart_live_dropped_total", Help: "Connections closed by the server, by close code."}, []string{"code"}),
		blocked: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "livecart_live_blocked_sends_total", Help: "Sends a socket could not take at once, finished by the connection's own writer."}),
		staleChecks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "livecart_live_stale_checks_total", Help: "Node-death comparisons of a stream's store values with the delivered ones made by this node, by result (compared, failed)."}, []string{"result"}),
		emitOverflow: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "livecart_live_emit_overflow_total", Help: "Events that found their stream's queue for the bus full, by what became of them (coalesced: superseded a queued one of the same key; rescued: left to the node-death comparison; over: a stream change queued over the bound, nothing of its kind to supersede; refused: answered unavailable; lost: dropped, in the next snapshot, only without the comparison)."}, []string{"result"}),
		logRestarts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "livecart_live_log_restarts_total", Help: "Times a stream's event log restarted (its seq went back: Redis lost its data), as this node saw it; the stream's viewers here got a fresh snapshot."}),
	}
	if reg != nil {
		reg.MustRegister(m.connections, m.events, m.deliveries, m.dropped, m.blocked, m.staleChecks, m.emitOverflow, m.logRestarts)
	}
	return m
}
