package cart

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// bucketOrigin holds each stream's MediaOrigin as JSON (key: stream id; absent when
// the stream is published nowhere).
var bucketOrigin = []byte("media_origin")

// ClaimMediaOrigin records where the stream is published unless another node holds a
// fresh claim.
func (s *BoltStore) ClaimMediaOrigin(ctx context.Context, id string, o MediaOrigin, now time.Time, ttl time.Duration) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		if _, err := boltLiveStream(tx, id); err != nil {
			return err
		}
		cur, err := boltOrigin(tx, id)
		if err != nil {
			return err
		}
		if cur.Session != "" && cur.NodeID != o.NodeID && cur.Seen.After(now.Add(-ttl)) {
			return fmt.Errorf("stream %s is published on node %s: %w", id, cur.NodeID, ErrConflict)
		}
		o.Seen = now.UTC()
		return putJSON(tx.Bucket(bucketOrigin), id, o)
	})
}

// RenewMediaOrigin refreshes the session's origin.
func (s *BoltStore) RenewMediaOrigin(ctx context.Context, id, session string, now time.Time) (bool, error) {
	renewed := false
	err := s.db.Update(func(tx *bolt.Tx) error {
		if _, err := boltLiveStream(tx, id); err != nil {
			return err
		}
		o, err := boltOrigin(tx, id)
		if err != nil || o.Session == "" || o.Session != session {
			return err
		}
		renewed, o.Seen = true, now.UTC()
		return putJSON(tx.Bucket(bucketOrigin), id, o)
	})
	return renewed, err
}

// ClearMediaOrigin forgets the origin if it is still the session's.
func (s *BoltStore) ClearMediaOrigin(ctx context.Context, id, session string) (bool, error) {
	cleared := false
	err := s.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketStreams).Get([]byte(id)) == nil {
			return fmt.Errorf("stream %s: %w", id, ErrNotFound)
		}
		o, err := boltOrigin(tx, id)
		if err != nil || o.Session != session {
			return err
		}
		cleared = true
		return tx.Bucket(bucketOrigin).Delete([]byte(id))
	})
	return cleared, err
}

// MediaOrigin returns where the stream is published (Seen as stamped: one node, one
// clock; now is not needed).
func (s *BoltStore) MediaOrigin(ctx context.Context, id string, now time.Time) (MediaOrigin, error) {
	var o MediaOrigin
	err := s.db.View(func(tx *bolt.Tx) error {
		if _, err := boltLiveStream(tx, id); err != nil {
			return err
		}
		var err error
		o, err = boltOrigin(tx, id)
		return err
	})
	return o, err
}

// boltLiveStream reads a stream that must exist and not have ended.
func boltLiveStream(tx *bolt.Tx, id string) (Stream, error) {
	var st Stream
	if err := getJSON(tx.Bucket(bucketStreams), id, &st); err != nil {
		return st, err
	}
	if st.Status == StreamEnded {
		return st, errStreamEnded
	}
	return st, nil
}

func boltOrigin(tx *bolt.Tx, id string) (MediaOrigin, error) {
	var o MediaOrigin
	if raw := tx.Bucket(bucketOrigin).Get([]byte(id)); raw != nil {
		if err := json.Unmarshal(raw, &o); err != nil {
			return o, fmt.Errorf("stream %s origin: %w", id, err)
		}
	}
	return o, nil
}
