package cart

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

var _ Store = (*BoltStore)(nil)

// Bucket names of the embedded store.
var (
	bucketStreams = []byte("streams")
	bucketAudit   = []byte("audit")      // key: stream id + "/" + RFC3339Nano time + "/" + seq
	bucketMute    = []byte("media_mute") // key: stream id; value: MediaMute as JSON
)

// BoltStore is the embedded durable Store on a bbolt file. Every acknowledged write is
// fsynced before the call returns, so nothing acknowledged is lost on kill -9.
type BoltStore struct {
	db *bolt.DB
	// Group commit (bolt_group.go): writes are queued to one writer goroutine.
	writes     chan *groupCall
	quit       chan struct{}
	writerDone chan struct{}
	closeOnce  sync.Once
	// Owned by the writer goroutine (commitGroup; OpenBolt before it starts), see
	// bolt_index.go: idem maps each idempotency key (userKey(user, 'i', key), by its
	// hash) to the time of its idem_expiry entry; unindexed counts the orders in
	// order_log, which the writer indexes once there are indexBatch.
	idem      map[idemSum]int64
	hasher    idemHasher
	unindexed int
	tuning    boltTuning
	// logged lists the orders of order_log by user, oldest first, so that a listing
	// need not read the whole log. The writer changes it after each commit that
	// appends or indexes orders; ListOrders begins its read transaction under the read
	// lock, so every order listed here is in that transaction (bolt_index.go).
	loggedMu sync.RWMutex
	logged   map[string][]orderRef
	// media records where WHEP sessions live (mediasession.go).
	media mediaSessions
	// carts lists each user's holds, units counts each buyer's units held and bought
	// in each live sale (bolt_holds.go). The writer owns both and changes them after
	// each commit, carts under cartsMu (ListHolds reads it under the read lock).
	cartsMu sync.RWMutex
	carts   map[string][]cartEntry
	units   map[string]map[string]int
	// vals is the value chunk the writer's last group transaction cut values from
	// (txScratch.vals), emptied: the next group's first chunk (see keepVals).
	vals []byte
	// commitFault (tests) is an error the writer reports after a commit that landed,
	// as bbolt does when the fdatasync of the meta page it wrote fails;
	// commitFaultBefore one its transaction returns before committing (nothing lands,
	// as when bbolt cannot write the transaction's pages).
	commitFault, commitFaultBefore func() error
	// log is open's logger (with the file): EndStream logs a sale it skips.
	log *slog.Logger
}

// boltTuning says when the writer indexes the order log (bolt_index.go).
type boltTuning struct {
	indexBatch int           // once it holds this many orders, in the group's transaction
	indexIdle  time.Duration // after the writer has been idle this long
}

var defaultTuning = boltTuning{indexBatch: 4096, indexIdle: 200 * time.Millisecond}

// Close stops the writer (calls after it fail with ErrUnavailable) and closes the file.
func (s *BoltStore) Close() error {
	s.closeOnce.Do(func() { close(s.quit) })
	<-s.writerDone
	return s.db.Close()
}

// Ping reports whether the database is open.
func (s *BoltStore) Ping(ctx context.Context) error {
	return s.db.View(func(*bolt.Tx) error { return nil })
}

func getJSON(b *bolt.Bucket, key string, v any) error {
	raw := b.Get([]byte(key))
	if raw == nil {
		return ErrNotFound
	}
	return unmarshalRecord(raw, v)
}

func putJSON(b *bolt.Bucket, key string, v any) error {
	raw, err := marshalRecord(v)
	if err != nil {
		return err
	}
	return b.Put([]byte(key), raw)
}

// CreateStream stores a new stream.
func (s *BoltStore) CreateStream(ctx context.Context, st Stream) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketStreams)
		if b.Get([]byte(st.ID)) != nil {
			return fmt.Errorf("stream %s: %w", st.ID, ErrConflict)
		}
		return putJSON(b, st.ID, st)
	})
}

// GetStream returns one stream.
func (s *BoltStore) GetStream(ctx context.Context, id string) (Stream, error) {
	var st Stream
	err := s.db.View(func(tx *bolt.Tx) error {
		return getJSON(tx.Bucket(bucketStreams), id, &st)
	})
	return st, err
}

// ListStreams returns the streams that are not ended, oldest first.
func (s *BoltStore) ListStreams(ctx context.Context) ([]Stream, error) {
	out := []Stream{}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketStreams).ForEach(func(_, v []byte) error {
			var st Stream
			if err := json.Unmarshal(v, &st); err != nil {
				return err
			}
			if st.Status != StreamEnded {
				out = append(out, st)
			}
			return nil
		})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	return out, err
}

// boltStreamPublisher is a stream's record with the sessions SetStreamLive keeps:
// Publisher, whose arrival is recorded, and PublisherLeft, the last whose leave is.
// Only SetStreamLive reads them; the other writes of the record (EndStream) drop them.
type boltStreamPublisher struct {
	Stream
	Publisher     string `json:"publisher,omitempty"`
	PublisherLeft string `json:"publisher_left,omitempty"`
}

// SetStreamLive records the publisher's arrival or leave (see Store).
func (s *BoltStore) SetStreamLive(ctx context.Context, id, session string, live bool, now time.Time) (Stream, bool, error) {
	var rec boltStreamPublisher
	applied := false
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketStreams)
		if err := getJSON(b, id, &rec); err != nil {
			return err
		}
		if !live && session != "" {
			o, err := boltOrigin(tx, id)
			if err != nil {
				return err
			}
			if o.Session == session {
				if err := tx.Bucket(bucketOrigin).Delete([]byte(id)); err != nil {
					return err
				}
			}
		}
		if rec.Status == StreamEnded {
			return errStreamEnded
		}
		switch {
		case live && session != "" && rec.PublisherLeft == session:
			return nil // its leave is recorded: a late arrival
		case live:
			rec.Status, rec.Publisher = StreamLive, session
			if rec.StartedAt == nil {
				t := now.UTC()
				rec.StartedAt = &t
			}
		case session != "":
			rec.PublisherLeft = session
			if rec.Publisher != "" && rec.Publisher != session {
				return putJSON(b, id, rec) // another publisher came since
			}
			fallthrough
		default:
			rec.Status, rec.Publisher = StreamIdle, ""
		}
		applied = true
		return putJSON(b, id, rec)
	})
	return rec.Stream, applied, err
}

// SetMediaMute changes the stream's media mute in one transaction.
func (s *BoltStore) SetMediaMute(ctx context.Context, id string, audio, video *bool) (MediaMute, error) {
	var m MediaMute
	err := s.db.Update(func(tx *bolt.Tx) error {
		var err error
		if m, err = boltMediaMute(tx, id); err != nil {
			return err
		}
		var st Stream
		if err := getJSON(tx.Bucket(bucketStreams), id, &st); err != nil {
			return err
		}
		if st.Status == StreamEnded {
			return errStreamEnded
		}
		if audio != nil {
			m.AudioMuted = *audio
		}
		if video != nil {
			m.VideoMuted = *video
		}
		return putJSON(tx.Bucket(bucketMute), id, m)
	})
	return m, err
}

// MediaMute returns the stream's media mute.
func (s *BoltStore) MediaMute(ctx context.Context, id string) (MediaMute, error) {
	var m MediaMute
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		m, err = boltMediaMute(tx, id)
		return err
	})
	return m, err
}

// boltMediaMute reads the mute of an existing stream (zero until first set).
func boltMediaMute(tx *bolt.Tx, id string) (MediaMute, error) {
	var m MediaMute
	if tx.Bucket(bucketStreams).Get([]byte(id)) == nil {
		return m, fmt.Errorf("stream %s: %w", id, ErrNotFound)
	}
	if raw := tx.Bucket(bucketMute).Get([]byte(id)); raw != nil {
		if err := json.Unmarshal(raw, &m); err != nil {
			return m, err
		}
	}
	return m, nil
}

// EndStream ends the stream and its scheduled and active sales. A sale whose record,
// or whose product's record, cannot be read is skipped and logged at error level, as
// the sale sweep skips it (open logs it too): it stays in live_sales, so that once the
// record is restored it is live again and can be ended.
func (s *BoltStore) EndStream(ctx context.Context, id string, now time.Time) (Stream, []Sale, error) {
	var (
		st      Stream
		sales   []Sale
		skipped map[string]error
	)
	err := s.update(func(t *boltTx) error {
		sales, skipped = []Sale{}, nil // the group may run this again
		var err error
		if st, err = t.stream(id); err != nil || st.Status == StreamEnded {
			return err
		}
		st.Status = StreamEnded
		end := now.UTC()
		st.EndedAt = &end
		if sales, skipped, err = t.endStreamSales(id, now); err != nil {
			return err
		}
		return putJSON(t.b(bucketStreams), id, st)
	})
	if err == nil {
		for sale, serr := range skipped {
			s.log.Error("embedded store: a sale's record, or its product's, cannot be read: ending its stream skipped it (a live sale stays live, its remaining units are not returned to its product, until the record is restored); restore it from a backup",
				"stream", id, "sale", sale, "err", serr)
		}
	}
	return st, sales, err
}

// AppendAudit records an audit entry. Keys sort by time, then by arrival.
func (s *BoltStore) AppendAudit(ctx context.Context, e AuditEntry) error {
	return s.update(func(t *boltTx) error {
		b := t.b(bucketAudit)
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		key := fmt.Sprintf("%s/%s/%016x", e.StreamID, e.At.UTC().Format("2006-01-02T15:04:05.000000000Z"), seq)
		return putJSON(b, key, e)
	})
}

// ListAudit returns the stream's audit entries, oldest first.
func (s *BoltStore) ListAudit(ctx context.Context, streamID string) ([]AuditEntry, error) {
	out := []AuditEntry{}
	prefix := []byte(streamID + "/")
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketAudit).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			var e AuditEntry
			if err := json.Unmarshal(v, &e); err != nil {
				return err
			}
			out = append(out, e)
		}
		return nil
	})
	return out, err
}
