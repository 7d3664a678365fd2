package main

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/livecart/livecart/web/live"
)

// buildLive builds the live channel: in process on the embedded store, through Redis
// (events, history, mutes, presence) when several nodes share one.
func (m *Main) buildLive(ctx context.Context, reg prometheus.Registerer) (*live.Hub, error) {
	var (
		bus      live.Bus
		presence live.Presence
	)
	switch m.cfg.Store {
	case "redis":
		rdb, err := live.NewRedisClientNamed(m.cfg.Redis.URL, redisClientName(m.cfg.NodeID, "live"))
		if err != nil {
			return nil, fmt.Errorf("live: redis url: %w", err)
		}
		m.closers = append(m.closers, rdb.Close)
		if err := rdb.Ping(ctx).Err(); err != nil {
			// The bus resubscribes by itself once Redis is up.
			m.log.Warn("live: redis does not answer; live events wait for it", "err", err)
		}
		if err := m.claimNodeID(ctx, rdb); err != nil {
			return nil, err
		}
		m.nodeRunningFunc = m.nodeRunning(rdb)
		rb := live.NewRedisBus(rdb, m.cfg.Redis.Prefix, nil, m.log)
		m.closers = append(m.closers, rb.Close)
		bus, presence = rb, live.NewRedisPresence(rdb, m.cfg.Redis.Prefix, m.cfg.NodeID, nil)
	default:
		mb := live.NewMemoryBus(nil, 0)
		if st, ok := m.store.(live.SeqStore); ok { // the embedded store: seqs go on after a restart
			mb.SetSeqStore(st)
		}
		if ms, ok := m.store.(live.MuteStore); ok { // and mutes hold
			if err := mb.KeepMutes(ctx, ms); err != nil {
				return nil, fmt.Errorf("live: chat mutes: %w", err)
			}
		}
		bus, presence = mb, live.NewMemoryPresence(nil)
	}
	cfg := live.Config{
		Bus:       bus,
		Presence:  presence,
		Stock:     m.store,
		Logger:    m.log,
		Metrics:   reg,
		ChatRate:  rate.Limit(m.cfg.Live.ChatPerSecond),
		ChatBurst: m.cfg.Live.ChatBurst,
		Writers:   m.cfg.Live.Writers,

		EmitQueueMax:   m.cfg.Live.EmitQueueMax,
		EmitQueueBytes: m.cfg.Live.EmitQueueBytes,
	}
	if len(m.cfg.Live.AllowedOrigins) > 0 {
		cfg.CheckOrigin = live.OriginChecker(m.cfg.Live.AllowedOrigins)
	}
	hub := live.NewHub(cfg)
	m.closers = append(m.closers, hub.Close) // closed first: drops the websockets (1001)
	return hub, nil
}
