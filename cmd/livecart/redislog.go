package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
)

// redisLogger routes go-redis's own messages (one per failed dial during an outage)
// into slog at debug level: requests already log the outage as `unavailable`, once
// each, so these would only repeat it. go-redis keeps its logger globally, so only
// main sets it.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, fmt.Sprintf(format, v...), "component", "go-redis")
}

// redactURL hides the password of a redis:// URL for logs.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable url)"
	}
	return u.Redacted()
}
