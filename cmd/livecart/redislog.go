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

// redisClientName is the name a node's Redis connections carry (CLIENT LIST shows it):
// livecart:<node id>:<use>, use being "store" (the cart store and its /readyz ping)
// or "live" (the live channel: bus, presence, stock gate), so an operator finds one
// node's connections. Redis refuses a name with a byte outside '!'..'~' (a space, a
// control character, any byte of a non-ASCII character), and with it the connection:
// such bytes of the node id become '_', one each (node_id's validation and the default
// id already keep them out; this guards a Config built without validate).
func redisClientName(node, use string) string {
	b := []byte("livecart:" + node + ":" + use)
	for i, c := range b {
		if c <= ' ' || c >= 0x7f {
			b[i] = '_'
		}
	}
	return string(b)
}
