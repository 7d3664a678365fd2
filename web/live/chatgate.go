package live

import (
	"context"
	_ "embed"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/time/rate"
)

// ChatGate is a Bus that checks a chat message against the sender's mute and a rate
// limit shared by every node, in one call: the RedisBus implements it. Without one
// (MemoryBus, the single node) the hub reads the mute (MutedUntil) and keeps the limit
// in process.
type ChatGate interface {
	// ChatCheck reports whether userID is muted on sid now (and until when); if not,
	// it takes one message from userID's limit on sid (limit a second, burst at once,
	// over every node) and reports whether there was room. A muted or refused
	// message takes nothing.
	ChatCheck(ctx context.Context, sid, userID string, limit rate.Limit, burst int) (until time.Time, muted, allowed bool, err error)
}

//go:embed lua/chat.lua
var chatLua string

var chatScript = redis.NewScript(chatLua)

var _ ChatGate = (*RedisBus)(nil)

// ChatCheck implements ChatGate: one script call (chat.lua).
func (b *RedisBus) ChatCheck(ctx context.Context, sid, userID string, limit rate.Limit, burst int) (time.Time, bool, bool, error) {
	per := int64(0) // µs a message; rate.Inf: no limit
	if limit > 0 && limit != rate.Inf {
		per = int64(math.Round(1e6 / float64(limit)))
	}
	keys := []string{b.key(sid, "mute:"+userID), b.key(sid, "chat:"+userID)}
	res, err := chatScript.Run(ctx, b.rdb, keys, b.now().UnixMilli(), per, burst).Slice()
	if err != nil {
		return time.Time{}, false, false, err
	}
	code := int64(-1)
	if len(res) > 0 {
		code, _ = res[0].(int64)
	}
	switch {
	case code == 0 && len(res) == 2:
		s, _ := res[1].(string)
		ms, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return time.Time{}, false, false, fmt.Errorf("live: chat check: mute until %q: %w", s, err)
		}
		return time.UnixMilli(ms).UTC(), true, false, nil
	case code == 1:
		return time.Time{}, false, true, nil
	case code == 2:
		return time.Time{}, false, false, nil
	}
	return time.Time{}, false, false, fmt.Errorf("live: chat check: unexpected reply %v", res)
}
