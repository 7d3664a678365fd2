package cart

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// bucketChatMute holds the chat mutes of the single node's live channel (its
// MuteStore), so that a restart lifts none: stream id, 0, user id → until (Unix ms, 8
// bytes big-endian). Expired ones go at the next mute or unmute.
var bucketChatMute = []byte("chat_mute")

func chatMuteKey(streamID, userID string) []byte {
	return append(append([]byte(streamID), 0), userID...)
}

// SaveChatMute records, durably, that userID may not chat on the stream until then; a
// zero until lifts the mute.
func (s *BoltStore) SaveChatMute(ctx context.Context, streamID, userID string, until, now time.Time) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketChatMute)
		var expired [][]byte
		nowMS := now.UnixMilli()
		b.ForEach(func(k, v []byte) error {
			if len(v) != 8 || int64(binary.BigEndian.Uint64(v)) <= nowMS {
				expired = append(expired, bytes.Clone(k))
			}
			return nil
		})
		for _, k := range expired {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		k := chatMuteKey(streamID, userID)
		if until.IsZero() {
			return b.Delete(k)
		}
		return b.Put(k, binary.BigEndian.AppendUint64(nil, uint64(until.UnixMilli())))
	})
	if err != nil {
		return fmt.Errorf("bolt: %w: %v", ErrUnavailable, err)
	}
	return nil
}

// ChatMutes calls fn with every chat mute that has not expired at now.
func (s *BoltStore) ChatMutes(ctx context.Context, now time.Time, fn func(streamID, userID string, until time.Time)) error {
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketChatMute).ForEach(func(k, v []byte) error {
			sid, uid, ok := bytes.Cut(k, []byte{0})
			if !ok || len(v) != 8 {
				return nil
			}
			if until := time.UnixMilli(int64(binary.BigEndian.Uint64(v))); until.After(now) {
				fn(string(sid), string(uid), until.UTC())
			}
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("bolt: %w: %v", ErrUnavailable, err)
	}
	return nil
}
