package live

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"time"
)

// HistorySize is the minimum number of recent events of a stream a Bus keeps for resume.
const HistorySize = 1000

// Record is one published event of a stream: its seq and the complete JSON frame
// {"type":..,"seq":..,"ts":..,<data fields>} as every viewer receives it.
type Record struct {
	Seq   int64
	Frame []byte
	// Lost is set (with Seq = the first seq the bus could deliver again) when events
	// were lost for good (history trimmed during an outage): viewers must resync.
	Lost bool
	// Reset is set (with Seq = the stream's last seq now) when the stream's event log
	// restarted (Redis lost its data: the seq went back): the records delivered before
	// do not lead to the ones after. Viewers must start again from a snapshot at Seq;
	// the records after Seq follow.
	Reset bool
}

// Bus carries a stream's events to every node in seq order. The memory implementation
// serves the embedded single node; the Redis one several nodes. Mutes live here too,
// because they must be shared by the nodes that share the events.
type Bus interface {
	// Publish assigns the stream's next seq (the first is 1) to the event, appends it
	// to the stream's bounded history (at least HistorySize events) and delivers it to
	// the subscribers, in one atomic step. body is the frame after the seq field:
	// `"ts":"...",<fields>}`; typ is the event type.
	Publish(ctx context.Context, sid, typ string, body []byte) (Record, error)
	// Subscribe delivers to fn every record of sid published after the returned seq,
	// in seq order, each once, never concurrently with itself, until cancel is called.
	// fn must not block.
	Subscribe(ctx context.Context, sid string, fn func(Record)) (last int64, cancel func(), err error)
	// Since returns the records with after < seq <= through, in order; ok is false
	// when the history no longer holds them all.
	Since(ctx context.Context, sid string, after, through int64) (recs []Record, ok bool, err error)
	// Mute keeps userID from chatting on sid until the given time.
	Mute(ctx context.Context, sid, userID string, until time.Time) error
	// Unmute lifts a mute (no error when not muted).
	Unmute(ctx context.Context, sid, userID string) error
	// MutedUntil reports whether userID is muted on sid now, and until when.
	MutedUntil(ctx context.Context, sid, userID string) (until time.Time, muted bool, err error)
	// Close stops delivery and releases the bus.
	Close() error
}

// errNotObject is returned when an event's data does not marshal to a JSON object.
var errNotObject = errors.New("live: event data must marshal to a JSON object")

// encodeBody renders the part of a frame after "seq": `"ts":"...",<fields of data>}`.
func encodeBody(ts time.Time, data any) ([]byte, error) {
	b := make([]byte, 0, 256)
	b = append(b, `"ts":"`...)
	b = ts.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	if data != nil {
		raw, err := json.Marshal(data)
		if err != nil {
			return nil, err
		}
		if len(raw) < 2 || raw[0] != '{' {
			if string(raw) != "null" {
				return nil, errNotObject
			}
			raw = []byte("{}")
		}
		if len(raw) > 2 {
			b = append(b, ',')
			b = append(b, raw[1:len(raw)-1]...)
		}
	}
	return append(b, '}'), nil
}

// quoteType renders an event type as a JSON string.
func quoteType(typ string) string {
	q, _ := json.Marshal(typ)
	return string(q)
}

// buildFrame joins type, seq and body into a frame. The Redis script does the same.
func buildFrame(typ string, seq int64, body []byte) []byte {
	q := quoteType(typ)
	b := make([]byte, 0, len(q)+len(body)+32)
	b = append(b, `{"type":`...)
	b = append(b, q...)
	b = append(b, `,"seq":`...)
	b = strconv.AppendInt(b, seq, 10)
	b = append(b, ',')
	return append(b, body...)
}

// buildUnsequenced renders a frame sent to one client only (no seq).
func buildUnsequenced(typ string, body []byte) []byte {
	q := quoteType(typ)
	b := make([]byte, 0, len(q)+len(body)+16)
	b = append(b, `{"type":`...)
	b = append(b, q...)
	b = append(b, ',')
	return append(b, body...)
}

// frameHead is what the hub reads back from a frame.
type frameHead struct {
	Type string `json:"type"`
	Seq  int64  `json:"seq"`
}

// frameTs returns the ts of a sequenced frame ({"type":..,"seq":N,"ts":"..",..}) as a
// slice of it, nil when it has none. Two events given the same seq by two logs (Redis
// lost the stream's log, or restarted from an older snapshot; the embedded node
// restored an older data file) are told apart by it: each event's ts is the time its
// node made it, to the nanosecond.
func frameTs(frame []byte) []byte {
	i := bytes.Index(frame, []byte(`,"seq":`))
	if i < 0 {
		return nil
	}
	rest := frame[i+len(`,"seq":`):]
	j := bytes.IndexByte(rest, ',')
	if j < 0 || !bytes.HasPrefix(rest[j:], []byte(`,"ts":"`)) {
		return nil
	}
	rest = rest[j+len(`,"ts":"`):]
	k := bytes.IndexByte(rest, '"')
	if k <= 0 {
		return nil
	}
	return rest[:k:k]
}
