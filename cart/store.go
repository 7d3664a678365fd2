package cart

import (
	"context"
	"time"
)

// Store is livecart's shared durable state. Every method is safe for concurrent use,
// atomic (a failed call leaves no partial state) and returns ErrUnavailable (wrapped)
// when the backing store cannot be reached. Two implementations: BoltStore (embedded,
// the default) and RedisStore; both pass the conformance suite in store_test.go.
type Store interface {
	// CreateStream stores a new stream. ErrConflict if the id exists.
	CreateStream(ctx context.Context, s Stream) error
	// GetStream returns the stream with this id, or ErrNotFound.
	GetStream(ctx context.Context, id string) (Stream, error)
	// ListStreams returns the streams that are not ended, oldest first.
	ListStreams(ctx context.Context) ([]Stream, error)
	// SetStreamLive marks the stream live (StartedAt set when it first goes live) or
	// idle again. ErrNotFound if unknown, ErrConflict if it has ended.
	SetStreamLive(ctx context.Context, id string, live bool, now time.Time) (Stream, error)
	// EndStream ends the stream (final) and ends its scheduled and active sales,
	// returning the sales it ended. Ending an ended stream returns it unchanged and no
	// sales. ErrNotFound if unknown.
	EndStream(ctx context.Context, id string, now time.Time) (Stream, []Sale, error)

	// AppendAudit records an audit entry of a stream.
	AppendAudit(ctx context.Context, e AuditEntry) error
	// ListAudit returns the stream's audit entries, oldest first.
	ListAudit(ctx context.Context, streamID string) ([]AuditEntry, error)

	// Ping reports whether the backing store answers (for /readyz).
	Ping(ctx context.Context) error
	// Close releases the store.
	Close() error
}
