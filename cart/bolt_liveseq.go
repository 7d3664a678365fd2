package cart

import (
	"context"
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// bucketLiveSeq holds, for each stream with live channel events, the highest seq
// reserved for them (8 bytes big-endian): the live channel's single-node bus (its
// SeqStore) goes on above it after a restart, so a viewer's seq of before names no
// event of after.
var bucketLiveSeq = []byte("live_seq")

// ReservedSeq returns the stream's reserved live channel seq (0 if none).
func (s *BoltStore) ReservedSeq(ctx context.Context, streamID string) (int64, error) {
	var r int64
	err := s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketLiveSeq).Get([]byte(streamID)); len(v) == 8 {
			r = int64(binary.BigEndian.Uint64(v))
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("bolt: %w: %v", ErrUnavailable, err)
	}
	return r, nil
}

// ReserveSeq records, durably, that the stream's live channel events may take seqs up
// to upTo (a lower value than the one recorded changes nothing).
func (s *BoltStore) ReserveSeq(ctx context.Context, streamID string, upTo int64) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketLiveSeq)
		if v := b.Get([]byte(streamID)); len(v) == 8 && int64(binary.BigEndian.Uint64(v)) >= upTo {
			return nil
		}
		return b.Put([]byte(streamID), binary.BigEndian.AppendUint64(nil, uint64(upTo)))
	})
	if err != nil {
		return fmt.Errorf("bolt: %w: %v", ErrUnavailable, err)
	}
	return nil
}
