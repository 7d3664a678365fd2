package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// The node id's claim on Redis (the key <prefix>:node:<node id>, holding a token of
// this process, with an expiry that the node renews): two nodes started with one
// node_id would count their viewers in one field (each overwriting the other's) and
// take each other's media origin for their own (two publishers of one stream), so a
// node whose id another running node holds does not start.
const (
	nodeClaimTTL   = 10 * time.Second
	nodeClaimEvery = 3 * time.Second
	// nodeClaimWait is how long a starting node waits for a claim held by another
	// process to lapse: the claim of this node's own earlier process, killed before it
	// could drop it, lapses within nodeClaimTTL.
	nodeClaimWait = nodeClaimTTL + time.Second
)

// renewClaim: KEYS[1] the claim, ARGV[1] this process's token, ARGV[2] the TTL (ms).
// Takes the claim if it is free or ours; answers 1, or 0 if another process holds it.
var renewClaim = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v and v ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1`)

// dropClaim: KEYS[1] the claim, ARGV[1] this process's token: deletes it if ours.
var dropClaim = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`)

// nodeRunning tells whether a node holds the claim on nodeID (it runs, or was killed
// less than nodeClaimTTL ago), through rdb (the live channel's client).
func (m *Main) nodeRunning(rdb redis.UniversalClient) func(ctx context.Context, nodeID string) (bool, error) {
	return func(ctx context.Context, nodeID string) (bool, error) {
		n, err := rdb.Exists(ctx, m.nodeClaimKey(nodeID)).Result()
		return n > 0, err
	}
}

// nodeClaimKey is the Redis key of the claim on a node id.
func (m *Main) nodeClaimKey(nodeID string) string { return m.cfg.Redis.Prefix + ":node:" + nodeID }

// errNodeIDInUse: another running node holds this node's id.
var errNodeIDInUse = errors.New("in use by another running node on this Redis")

// claimNodeID takes the node id's claim through rdb (the live channel's client),
// waiting up to nodeClaimWait for another process's claim to lapse, and keeps it until
// Close (before rdb closes). A Redis that does not answer does not stop the start (the
// node serves 503 until it does): the claim is taken once it answers.
func (m *Main) claimNodeID(ctx context.Context, rdb redis.UniversalClient) error {
	key := m.nodeClaimKey(m.cfg.NodeID)
	b := make([]byte, 16)
	rand.Read(b)
	token := hex.EncodeToString(b)
	claim := func(ctx context.Context) (bool, error) {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		n, err := renewClaim.Run(ctx, rdb, []string{key}, token, nodeClaimTTL.Milliseconds()).Int()
		return n == 1, err
	}
	deadline := time.Now().Add(nodeClaimWait)
	for {
		ok, err := claim(ctx)
		if err != nil {
			m.log.Warn("node id: redis does not answer; the id is claimed once it does", "node", m.cfg.NodeID, "err", err)
			break
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("node_id %q: %w (key %s): give each node its own node_id", m.cfg.NodeID, errNodeIDInUse, key)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	renewCtx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		held := true
		t := time.NewTicker(nodeClaimEvery)
		defer t.Stop()
		for {
			select {
			case <-renewCtx.Done():
				return
			case <-t.C:
			}
			ok, err := claim(renewCtx)
			switch {
			case err != nil: // Redis is down: logged by the store and the live channel
			case !ok && held:
				m.log.Error("node id in use by another running node on this Redis: viewer counts and media origins of the two mix; give each node its own node_id", "node", m.cfg.NodeID, "key", key)
			}
			held = ok || err != nil
		}
	}()
	m.closers = append(m.closers, func() error {
		stop()
		<-done
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		dropClaim.Run(ctx, rdb, []string{key}, token) // best effort: it lapses anyway
		return nil
	})
	return nil
}
