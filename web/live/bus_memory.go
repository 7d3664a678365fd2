package live

import (
	"context"
	"sync"
	"time"
)

// endedHistory is how many events an ended stream keeps for resume once
// EndedRetention has passed since its end (until then it keeps its whole history, as
// the Redis bus does).
const endedHistory = 16

// MemoryBus is the single-node Bus: seq, history and mutes in process. With a
// SeqStore (SetSeqStore) a stream's seq goes on, after a restart, above every seq an
// earlier process gave its events; with a MuteStore (KeepMutes) mutes outlive it.
type MemoryBus struct {
	now       func() time.Time
	history   int
	seqs      SeqStore      // nil: every stream's seq starts at 0 in each process
	endedKeep time.Duration // how long an ended stream keeps its whole history
	// afterFunc runs f after d (time.AfterFunc; tests run it when they choose).
	afterFunc func(d time.Duration, f func())

	mu      sync.Mutex              // guards streams and mutes
	streams map[string]*memStream   // by stream id
	mutes   map[[2]string]time.Time // (stream, user) → until
	// muteStore (KeepMutes) records the mutes durably; muteWrites orders its writes and
	// the map's, and is not held by readers (a write waits for the disk).
	muteStore  MuteStore
	muteWrites sync.Mutex
}

var _ Bus = (*MemoryBus)(nil)

type memStream struct {
	mu       sync.Mutex // guards everything below; held while delivering, so order holds
	sid      string
	loaded   bool // seq and reserved are read from the SeqStore (or there is none)
	seq      int64
	reserved int64    // the SeqStore allows seqs up to this
	hist     []Record // oldest first, at most 2×history
	ended    bool     // the stream's end was published; its history is trimmed later
	subs     map[int]func(Record)
	nextSub  int
}

// NewMemoryBus returns a MemoryBus keeping at least history events per stream
// (HistorySize when ≤ 0). now may be nil (time.Now).
func NewMemoryBus(now func() time.Time, history int) *MemoryBus {
	if now == nil {
		now = time.Now
	}
	if history <= 0 {
		history = HistorySize
	}
	return &MemoryBus{now: now, history: history, endedKeep: EndedRetention,
		afterFunc: func(d time.Duration, f func()) { time.AfterFunc(d, f) },
		streams:   map[string]*memStream{}, mutes: map[[2]string]time.Time{}}
}

func (b *MemoryBus) stream(sid string) *memStream {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.streams[sid]
	if s == nil {
		s = &memStream{sid: sid, subs: map[int]func(Record){}}
		b.streams[sid] = s
	}
	return s
}

// SeqStore keeps, durably, how far each stream's seq may go (the embedded store), so
// that a restarted node's events never take a seq an earlier process gave other events:
// a viewer resuming from before the restart (?since=) is sent a snapshot, not the new
// process's events of seqs after its own, nor nothing when they are equal.
type SeqStore interface {
	// ReservedSeq is the highest seq reserved for the stream's events (0: none).
	ReservedSeq(ctx context.Context, sid string) (int64, error)
	// ReserveSeq records, durably, that the stream's events may take seqs up to upTo.
	ReserveSeq(ctx context.Context, sid string, upTo int64) error
}

// seqBlock is how many seqs a stream reserves at a time: one write of the SeqStore per
// seqBlock events.
const seqBlock = 1024

// SetSeqStore makes the bus continue each stream's seq above its reserved one (call it
// before the bus is used).
func (b *MemoryBus) SetSeqStore(st SeqStore) { b.seqs = st }

// load reads the stream's reserved seq once, under s.mu. A stream that had events in an
// earlier process goes on at one past its reservation (reserved at once, so a later
// process goes past it too): no seq up to it is reused, and a viewer with that very seq
// is not taken as up to date (its events may not all have gone out). One that never had
// events starts at 0 (the first event is 1).
func (s *memStream) load(ctx context.Context, b *MemoryBus) error {
	if s.loaded || b.seqs == nil {
		return nil
	}
	r, err := b.seqs.ReservedSeq(ctx, s.sid)
	if err != nil {
		return err
	}
	if r > 0 {
		s.seq, s.reserved = r+1, r+1
		if err := s.reserve(ctx, b); err != nil {
			return err
		}
	}
	s.loaded = true
	return nil
}

// reserve makes sure the next seq is reserved in the SeqStore, under s.mu.
func (s *memStream) reserve(ctx context.Context, b *MemoryBus) error {
	if b.seqs == nil || s.seq < s.reserved {
		return nil
	}
	upTo := s.seq + seqBlock
	if err := b.seqs.ReserveSeq(ctx, s.sid, upTo); err != nil {
		return err
	}
	s.reserved = upTo
	return nil
}

// Publish implements Bus.
func (b *MemoryBus) Publish(ctx context.Context, sid, typ string, body []byte) (Record, error) {
	s := b.stream(sid)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.load(ctx, b); err != nil {
		return Record{}, err
	}
	if err := s.reserve(ctx, b); err != nil {
		return Record{}, err
	}
	s.seq++
	rec := Record{Seq: s.seq, Frame: buildFrame(typ, s.seq, body)}
	s.hist = append(s.hist, rec)
	if len(s.hist) >= 2*b.history {
		s.hist = append([]Record(nil), s.hist[len(s.hist)-b.history:]...)
	}
	if isStreamEnded(rec.Frame) && !s.ended {
		// Nothing follows the end. Viewers cut off around it resume from the whole
		// history for a while; then only the last events stay, so ended streams do
		// not hold their history for ever.
		s.ended = true
		b.afterFunc(b.endedKeep, s.trimEnded)
	}
	for _, fn := range s.subs {
		fn(rec)
	}
	return rec, nil
}

// trimEnded keeps only the last endedHistory events of an ended stream.
func (s *memStream) trimEnded() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.hist) > endedHistory {
		s.hist = append([]Record(nil), s.hist[len(s.hist)-endedHistory:]...)
	}
}

// Subscribe implements Bus.
func (b *MemoryBus) Subscribe(ctx context.Context, sid string, fn func(Record)) (int64, func(), error) {
	s := b.stream(sid)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.load(ctx, b); err != nil {
		return 0, nil, err
	}
	id := s.nextSub
	s.nextSub++
	s.subs[id] = fn
	cancel := func() {
		s.mu.Lock()
		delete(s.subs, id)
		s.mu.Unlock()
	}
	return s.seq, cancel, nil
}

// Since implements Bus.
func (b *MemoryBus) Since(ctx context.Context, sid string, after, through int64) ([]Record, bool, error) {
	s := b.stream(sid)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.load(ctx, b); err != nil {
		return nil, false, err
	}
	if through > s.seq || after < 0 {
		return nil, false, nil
	}
	if after >= through {
		return []Record{}, true, nil
	}
	if len(s.hist) == 0 || s.hist[0].Seq > after+1 {
		return nil, false, nil
	}
	first := s.hist[0].Seq
	out := make([]Record, 0, through-after)
	out = append(out, s.hist[after+1-first:through+1-first]...)
	return out, true, nil
}

// MuteStore keeps the chat mutes durably (the embedded store), so that a restart of
// the single node lifts none.
type MuteStore interface {
	// SaveChatMute records userID's mute on the stream until then (zero: lifted).
	SaveChatMute(ctx context.Context, sid, userID string, until, now time.Time) error
	// ChatMutes calls fn with every mute that has not expired at now.
	ChatMutes(ctx context.Context, now time.Time, fn func(sid, userID string, until time.Time)) error
}

// KeepMutes makes the bus record its mutes in ms and takes up those ms holds (call it
// before the bus is used).
func (b *MemoryBus) KeepMutes(ctx context.Context, ms MuteStore) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	err := ms.ChatMutes(ctx, b.now(), func(sid, userID string, until time.Time) {
		b.mutes[[2]string{sid, userID}] = until
	})
	if err != nil {
		return err
	}
	b.muteStore = ms
	return nil
}

// Mute implements Bus.
func (b *MemoryBus) Mute(ctx context.Context, sid, userID string, until time.Time) error {
	b.muteWrites.Lock() // the store and the map change in the same order
	defer b.muteWrites.Unlock()
	if b.muteStore != nil {
		if err := b.muteStore.SaveChatMute(ctx, sid, userID, until, b.now()); err != nil {
			return err
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	for k, u := range b.mutes { // expired mutes go away here, so the map stays small
		if !u.After(now) {
			delete(b.mutes, k)
		}
	}
	b.mutes[[2]string{sid, userID}] = until
	return nil
}

// Unmute implements Bus.
func (b *MemoryBus) Unmute(ctx context.Context, sid, userID string) error {
	b.muteWrites.Lock()
	defer b.muteWrites.Unlock()
	if b.muteStore != nil {
		if err := b.muteStore.SaveChatMute(ctx, sid, userID, time.Time{}, b.now()); err != nil {
			return err
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.mutes, [2]string{sid, userID})
	return nil
}

// MutedUntil implements Bus.
func (b *MemoryBus) MutedUntil(_ context.Context, sid, userID string) (time.Time, bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	u, ok := b.mutes[[2]string{sid, userID}]
	if !ok || !u.After(b.now()) {
		return time.Time{}, false, nil
	}
	return u, true, nil
}

// Close implements Bus.
func (b *MemoryBus) Close() error { return nil }
