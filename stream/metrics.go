package stream

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	reg        prometheus.Registerer
	publishers prometheus.Gauge
	viewers    prometheus.Gauge
	upstreams  prometheus.Gauge
	forwarded  prometheus.Counter
	dropped    prometheus.Counter
	skipped    prometheus.Counter // video not forwarded while a viewer waited for a keyframe
	resent     prometheus.Counter
	batches    prometheus.Counter // viewers' writers' passes over their viewers
	pli        prometheus.Counter
	late       prometheus.Counter
	direct     prometheus.Counter // viewers keyed for the relay's own SRTP output
	// packets of such viewers dropped while their pair was not one the relay can write to
	directDropped prometheus.Counter
	// UDP socket (parallel mode's batched sends).
	sendWaits  prometheus.Counter
	sendErrors prometheus.Counter
	sendCalls  prometheus.Counter
	sendMsgs   prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		reg: reg,
		publishers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "livecart_media_publishers", Help: "Open WHIP sessions."}),
		viewers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "livecart_media_viewers", Help: "Open WHEP sessions."}),
		upstreams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "livecart_media_upstreams", Help: "Open pulls of streams published on other nodes (cascade)."}),
		forwarded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "livecart_media_packets_forwarded_total", Help: "RTP packets written to viewers."}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "livecart_media_packets_dropped_total", Help: "RTP packets dropped because a viewer's queue was full."}),
		skipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "livecart_media_packets_skipped_total", Help: "Video packets not forwarded to a viewer waiting for the next keyframe: after a drop " +
				"(livecart_media_packets_dropped_total counts the packet that started it), or on joining when no cached group of pictures fits its queue."}),
		batches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "livecart_media_writer_batches_total", Help: "Passes of the viewers' writers over their viewers (packets forwarded / batches: packets per pass)."}),
		resent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "livecart_media_packets_resent_total", Help: "RTP packets resent to viewers on their NACKs."}),
		pli: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "livecart_media_pli_total", Help: "Keyframe requests sent to publishers."}),
		late: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "livecart_media_packets_late_total", Help: "Publisher packets not forwarded because they arrived over 1 s late (ingest backlog)."}),
		direct: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "livecart_media_viewers_direct_total", Help: "Viewers whose RTP the relay encrypted and sent itself, not through pion's write chain."}),
		directDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "livecart_media_direct_packets_dropped_total", Help: "RTP packets of viewers on the relay's own SRTP output dropped because their selected candidate pair was not one the relay could write to (such viewers never go back to pion's write chain)."}),
		sendWaits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "livecart_media_udp_send_waits_total", Help: "Writes that waited because the UDP send queue was full."}),
		sendErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "livecart_media_udp_send_errors_total", Help: "Datagrams the kernel refused to send."}),
		sendCalls: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "livecart_media_udp_sendmmsg_total", Help: "sendmmsg system calls made by the UDP send batcher."}),
		sendMsgs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "livecart_media_udp_send_messages_total", Help: "Messages passed to sendmmsg (a GSO train of packets to one viewer is one message)."}),
	}
	if reg != nil {
		for _, c := range m.collectors() {
			_ = reg.Register(c)
		}
	}
	return m
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.publishers, m.viewers, m.upstreams, m.forwarded, m.dropped, m.skipped, m.resent, m.batches, m.pli, m.late, m.direct, m.directDropped,
		m.sendWaits, m.sendErrors, m.sendCalls, m.sendMsgs}
}

func (m *metrics) unregister() {
	if m.reg == nil {
		return
	}
	for _, c := range m.collectors() {
		m.reg.Unregister(c)
	}
}

func (m *metrics) sendStats() sendStats {
	return sendStats{waits: m.sendWaits, errors: m.sendErrors, calls: m.sendCalls, messages: m.sendMsgs}
}
