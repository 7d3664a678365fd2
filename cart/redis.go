package cart

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

var _ Store = (*RedisStore)(nil)

// Key layout. P is the key prefix (RedisOptions.Prefix). A stream's keys share the
// hash tag {sid}, so each Lua script touches one Redis Cluster slot:
//
//	P{sid}:stream          hash   the stream (+ currency of its products)
//	P{sid}:audit           list   audit entries (JSON)
//	P{sid}:products        list   product ids, oldest first
//	P{sid}:p:<pid>         hash   product (stock, held, sold, hidden, ...)
//	P{sid}:putin           hash   product id → units put in (its stock at creation),
//	                              written with the product (since 2026-12-05: an
//	                              older product has none, its units put in unknown)
//	P{sid}:pins            list   pinned product ids in pin order
//	P{sid}:sales           list   sale ids, oldest first
//	P{sid}:s:<said>        hash   sale (remaining, held, sold, returned, status, ...)
//	P{sid}:su:<said>       hash   user id → units of the sale held + bought (and one
//	                              padding field of value 0 that keeps it a hashtable:
//	                              see lua/sale_create.lua)
//	P{sid}:exp             zset   live hold id → expiry (µs): written until 2026-12-04
//	                              (the due sets say the same); release.lua still reads
//	                              it and the checkout still cleans it while it exists
//	P{sid}:uh:<uid>        hash   the user's cart in this stream: hold id → the hold's
//	                              record d (its fields joined by "|", see lua/lib.lua;
//	                              since 2026-12-06 without its user and expires_at),
//	                              "-"+d once released (live until then); the field
//	                              goes when the hold is ordered or removed, the key
//	                              when the cart is emptied (since 2026-12-04)
//	P{sid}:uo:<uid>        hash   the user's orders in this stream: order id → its
//	                              record d (its fields joined by "|", see
//	                              lua/checkout.lua; since 2026-12-06 without its id,
//	                              stream, user and created_at), "k:"+key hash → order id|at|
//	                              fingerprint of an idempotency key (since 2026-12-04;
//	                              read as a key for 24 h from at)
//	P{sid}:orders          list   the stream's orders: "<oid> <uid>" (an older one: its id)
//
// The older form of a user's cart and of a user's orders in a stream (written until
// 2026-12-04, and still for a user whose uh:<uid> or uo:<uid> has it, until the cart is
// emptied; the orders' list stays; a node of an earlier version cannot read or write
// the newer forms: its scripts answer WRONGTYPE on them, and it fails such a user's
// cart and checkout requests in that stream (nothing sold twice: a hold it failed to
// list comes back by the sweep), so replace the nodes of one Redis together; the
// newer holds' sweep entries are in a set it does not sweep, see holdDueKey):
//
//	P{sid}:uh:<uid>        list   the user's hold ids in this stream (the cart)
//	P{sid}:h:<hid>         hash   hold: d, state "expired" once released; deleted when
//	                              ordered or removed (before 2026-12-02: a field each,
//	                              with id, stream_id, state "live")
//	P{sid}:uo:<uid>        list   the user's order ids in this stream
//	P{sid}:o:<oid>         hash   order: d (before 2026-12-02: a field each; since
//	                              2026-12-06 without its id, stream and created_at)
//	P{sid}:idem:<hash>     string order id|at|fingerprint of an idempotency key (24 h)
//
// Global keys, each written by a single command outside the scripts, are only
// indexes; each is written before the script it points to runs, so a crash in between
// leaves a harmless stale entry, never a lost one:
//
//	Pstreams               zset   open stream ids → created (µs)
//	Ppidx:<pid>, Psidx:<said>  string  stream id of a product / sale
//	Pholddue:b             zset   "sid hid len:uid hid len:uid ..." → the first expiry
//	                              (µs) of a batch of holds: the sweep of any node (see
//	                              holdBatchDueKey)
//	Pholddue:u             zset   "sid hid uid" → expiry (µs): holds made 2026-12-04 to
//	                              12-06 (still swept; older nodes sweep only holddue)
//	Pholddue               zset   "sid hid" → expiry (µs): holds made before 2026-12-04
//	Psaledue               zset   "sid said" → next status change (µs)
//	Pmigrated:cartsets     string "1" once no P{u:<uid>}:holds set is left (migrateCartSets)
//
// A user's global keys share the hash tag {u:<uid>}. The cart index is written right
// after the hold script, in the same round trip, so that lua/prune.lua can forget a
// stream safely; a crash in between leaves an unacknowledged hold out of the cart
// until it expires (its units come back by the sweep):
//
//	P{u:<uid>}:gen         hash   stream id → holds added there: the streams where the
//	                              user has holds (pruned lazily; the generation guards
//	                              the pruning); "~"+stream id → the generation an
//	                              order emptied there (read and dropped by the next
//	                              claim; was the hash P{u:<uid>}:emptied)
//	P{u:<uid>}:holds       set    older form of the same index (written until 2026-12-01
//	                              evening): moved into gen once, at open (migrateCartSets)
//	P{u:<uid>}:orders      set    stream ids where the user has orders
//	P{u:<uid>}:idem:<hash> string pending|token|fp|until_ms or done|sid|oid|at|fp of a key
//	                              (since 2026-12-06 an order leaves its pending mark;
//	                              a done mark is written by a retry that took over a
//	                              mark run out and found the order, see claimIdem)
const defaultRedisPrefix = "livecart:"

//go:embed lua/*.lua
var luaFiles embed.FS

// RedisOptions tunes OpenRedis. The zero value is fine.
type RedisOptions struct {
	// Prefix starts every key (default "livecart:"; a ':' is added if missing), so
	// several deployments and tests share one Redis. It must not contain '{' or '}'.
	Prefix string
	// PoolSize is the number of connections (default 128).
	PoolSize int
	// PingTimeout bounds Ping (/readyz) on a Redis that does not answer (frozen, or a
	// network that drops packets): Ping has its own two connections with this read,
	// write and dial timeout instead of the 3 s of the store's calls (default 500 ms).
	PingTimeout time.Duration
	// ClientName names the store's connections (its Ping's too) in Redis, as CLIENT
	// LIST shows them, unless the URL names them (client_name=...): an operator finds a
	// node's connections by it. Empty: unnamed.
	ClientName string
}

// DefaultPingTimeout is RedisOptions.PingTimeout's default.
const DefaultPingTimeout = 500 * time.Millisecond

// RedisStore is the Store on Redis (github.com/redis/go-redis/v9). Every change of
// stock is one Lua script; any node may sweep expired holds and advance sales.
type RedisStore struct {
	lastSeq  atomic.Int64 // the last batch's seq base (see seqBase)
	fixedSeq int64        // tests: every batch's seq base (0: the clock)
	rdb      *redis.Client
	ping     *redis.Client // Ping's own connections, with short timeouts
	prefix   string
	scripts  map[string]*redis.Script
	shas     map[string]*string // each script's SHA (see evalArgs)

	mu       sync.RWMutex
	streamOf map[string]string // guarded by mu: product/sale id → stream id (never changes)

	holds     *streamQueues[*holdCall]     // concurrent holds of a stream share a script call
	checkouts *streamQueues[*checkoutItem] // and so do its checkouts

	batch         *pipeBatcher   // checkout round trips shared by concurrent calls
	scriptsLoaded atomic.Bool    // every script was loaded once (see loadScripts)
	cartSetsGone  atomic.Bool    // no user's cart index has its older form left (migrateCartSets)
	plainClaims   atomic.Bool    // new keys are claimed without a script (see claimPlain); off in tests of claim.lua
	clock         redisClock     // Redis's clock, for the plain claims' pending marks
	migrating     atomic.Bool    // migrateCartSets was started
	closing       chan struct{}  // closed by Close: a running migration stops
	closeOnce     sync.Once      // closes closing
	background    sync.WaitGroup // hold batches and pipeline batches; Close waits

	// afterHoldNoScript, if set (tests only), runs when a hold batch found its script
	// missing, before it runs the script again.
	afterHoldNoScript func()
	// streamKeyedIndex, if set (tests only), makes hold batches write the cart index's
	// earlier form (stream → generation), as nodes before 2026-12-06 did.
	streamKeyedIndex bool
}

// OpenRedis prepares a store on the Redis at url (redis://host:port/db). It does not
// need Redis to answer yet: connections are dialled on use, every call answers
// ErrUnavailable (and Ping too) while Redis is down, and the store serves by itself
// once it is up. The scripts are loaded when Redis first answers (and again on
// NOSCRIPT, after a Redis restart). Only a bad url or prefix is an error.
func OpenRedis(ctx context.Context, url string, opts RedisOptions) (*RedisStore, error) {
	o, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("redis url %q: %w", url, err)
	}
	if opts.Prefix == "" {
		opts.Prefix = defaultRedisPrefix
	}
	if !strings.HasSuffix(opts.Prefix, ":") {
		opts.Prefix += ":"
	}
	if strings.ContainsAny(opts.Prefix, "{}") {
		return nil, fmt.Errorf("redis prefix %q must not contain braces", opts.Prefix)
	}
	if opts.PoolSize <= 0 {
		opts.PoolSize = 128
	}
	// One attempt per call: a script is never sent twice, and an outage answers
	// ErrUnavailable at once instead of after retries. The pool dials again by itself.
	o.MaxRetries = -1
	o.DialerRetries = 1
	o.DialTimeout = 3 * time.Second // refused (Redis down) fails at once; this is for a loaded machine
	o.ReadTimeout = 3 * time.Second
	o.WriteTimeout = 3 * time.Second
	// A call ends at its context's deadline when that comes sooner (an API request's
	// redis.request_timeout), not only after the read timeout. A script whose reply is
	// lost so may have run: the hold and checkout batches run on their own context
	// (the caller only stops waiting), and a checkout that answered unavailable keeps
	// its idempotency key pending, so a retry gets the order it placed, if any.
	o.ContextTimeoutEnabled = true
	o.PoolSize = opts.PoolSize
	// A storm queues for a connection rather than failing: a call waits up to 10 s
	// (then ErrUnavailable) when every connection is busy.
	o.PoolTimeout = 10 * time.Second
	o.DisableIdentity = true
	if o.ClientName == "" {
		o.ClientName = opts.ClientName
	}
	if opts.PingTimeout <= 0 {
		opts.PingTimeout = DefaultPingTimeout
	}
	po := *o
	po.DialTimeout, po.ReadTimeout, po.WriteTimeout = opts.PingTimeout, opts.PingTimeout, opts.PingTimeout
	po.PoolSize, po.PoolTimeout = 2, opts.PingTimeout
	scripts, err := readScripts()
	if err != nil {
		return nil, err
	}
	s := &RedisStore{
		rdb:      redis.NewClient(o),
		ping:     redis.NewClient(&po),
		prefix:   opts.Prefix,
		scripts:  scripts,
		shas:     map[string]*string{},
		streamOf: map[string]string{},
		closing:  make(chan struct{}),
	}
	for name, sc := range scripts {
		h := sc.Hash()
		s.shas[name] = &h
	}
	s.batch = &pipeBatcher{rdb: s.rdb, wg: &s.background}
	s.holds = newStreamQueues(maxHoldBatch, &s.background, s.holdBatch)
	s.checkouts = newStreamQueues(maxCheckoutBatch, &s.background, s.checkoutBatch)
	s.loadScripts(ctx, s.rdb) // best effort: Redis may be down; Ping loads them once it is up
	return s, nil
}

// loadScripts loads every script into Redis's script cache, so calls queued in
// pipelines (EVALSHA) find them; a call that finds one missing anyway (NOSCRIPT: Redis
// was down or restarted) falls back on EVAL by itself.
// (Not through a pipeline: Script.Load keeps the answer of SCRIPT LOAD as the
// script's hash, and a queued command answers "" until the pipeline runs.)
func (s *RedisStore) loadScripts(ctx context.Context, c *redis.Client) error {
	for name, sc := range s.scripts {
		if err := sc.Load(ctx, c).Err(); err != nil {
			return fmt.Errorf("load script %s: %w", name, unavailable(err))
		}
	}
	s.scriptsLoaded.Store(true)
	s.checkVersion(ctx, c)
	s.startMigration()
	return nil
}

// checkVersion turns the plain claims on and takes a first sample of Redis's clock
// for them (see claimPlain).
func (s *RedisStore) checkVersion(ctx context.Context, c *redis.Client) {
	if s.clock.wantSample() {
		sent := time.Now()
		t, err := c.Time(ctx).Result()
		s.clock.took(t, sent, err)
	}
	s.plainClaims.Store(true)
}

// startMigration runs migrateCartSets in the background unless it is done or running.
func (s *RedisStore) startMigration() {
	if s.cartSetsGone.Load() || s.migrating.Swap(true) {
		return
	}
	s.background.Add(1)
	go func() {
		defer s.background.Done()
		// Close stops it between two commands (it may take seconds on a large
		// keyspace); the next start does it again, from the start.
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			select {
			case <-s.closing:
				cancel()
			case <-ctx.Done():
			}
		}()
		if err := s.migrateCartSets(ctx); err != nil {
			s.migrating.Store(false) // the next Ping tries again
		}
	}()
}

// migrateCartSets moves every user's cart index of the older form (the set
// P{u:<uid>}:holds) into its generation hash (lua/migrate_holds.lua), then marks the
// store migrated, so claims stop reading the set (one command less per checkout).
// It runs once, in the background, when Redis first answers; until it is done, claims
// read the set as before. No version since 2026-12-01 evening writes the set, and
// every node of a service runs the same version, so once done it stays done.
func (s *RedisStore) migrateCartSets(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	marker := s.prefix + "migrated:cartsets"
	if v, err := s.rdb.Get(ctx, marker).Result(); err == nil && v == "1" {
		s.cartSetsGone.Store(true)
		return nil
	} else if err != nil && !errors.Is(err, redis.Nil) {
		return err
	}
	iter := s.rdb.Scan(ctx, 0, globEscape(s.prefix)+"{u:*}:holds", 1000).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		base, ok := strings.CutSuffix(k, "holds")
		if !ok {
			continue
		}
		// An error here must fail the migration: skipping the key would mark the
		// prefix migrated with this set unmoved, and claims would stop reading it.
		typ, err := s.rdb.Type(ctx, k).Result()
		if err != nil {
			return err
		}
		if typ != "set" {
			continue
		}
		if err := s.scripts["migrate_holds"].Run(ctx, s.rdb, []string{base}).Err(); err != nil {
			return err
		}
	}
	if err := iter.Err(); err != nil {
		return err
	}
	if err := s.rdb.Set(ctx, marker, "1", 0).Err(); err != nil {
		return err
	}
	s.cartSetsGone.Store(true)
	return nil
}

// globEscape quotes the characters special to Redis's MATCH patterns.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// readScripts prepends lib.lua to every other script of lua/, or only its core to a
// script that asks for no more (first line "-- lib: core").
func readScripts() (map[string]*redis.Script, error) {
	lib, err := luaFiles.ReadFile("lua/lib.lua")
	if err != nil {
		return nil, err
	}
	core, _, ok := bytes.Cut(lib, []byte("\n-- end of the core\n"))
	if !ok {
		return nil, errors.New("lua/lib.lua: no end of the core")
	}
	entries, err := luaFiles.ReadDir("lua")
	if err != nil {
		return nil, err
	}
	out := map[string]*redis.Script{}
	for _, e := range entries {
		name := strings.TrimSuffix(e.Name(), ".lua")
		if name == "lib" {
			continue
		}
		src, err := luaFiles.ReadFile("lua/" + e.Name())
		if err != nil {
			return nil, err
		}
		if bytes.HasPrefix(src, []byte("-- lib: core\n")) {
			out[name] = redis.NewScript(string(core) + "\n" + string(src))
		} else {
			out[name] = redis.NewScript(string(lib) + "\n" + string(src))
		}
	}
	return out, nil
}

// Close stops the cart-set migration if it runs, waits for the writes in flight, then
// closes the connections.
func (s *RedisStore) Close() error {
	s.closeOnce.Do(func() { close(s.closing) })
	s.background.Wait()
	return errors.Join(s.rdb.Close(), s.ping.Close())
}

// Ping reports whether Redis answers within RedisOptions.PingTimeout; the first time
// it does after the store opened without Redis, it loads the scripts.
func (s *RedisStore) Ping(ctx context.Context) error {
	if err := s.ping.Ping(ctx).Err(); err != nil {
		return unavailable(err)
	}
	if !s.scriptsLoaded.Load() {
		return s.loadScripts(ctx, s.ping)
	}
	s.startMigration()
	return nil
}

// unavailable wraps a Redis or network error with ErrUnavailable (nil stays nil).
func unavailable(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("redis: %w: %w", err, ErrUnavailable)
}

// base is the key prefix of one stream's keys (its hash tag).
func (s *RedisStore) base(streamID string) string {
	return s.prefix + "{" + streamID + "}:"
}

// userBase is the key prefix of one user's global keys (one slot per user; a '}' in
// the user id only shortens the tag, the same way for all of that user's keys).
func (s *RedisStore) userBase(userID string) string {
	return s.prefix + "{u:" + userID + "}:"
}

// userKey is userBase(userID) + name, made in one allocation.
func (s *RedisStore) userKey(userID, name string) string {
	return s.prefix + "{u:" + userID + "}:" + name
}

// scriptReply is what the write scripts answer (lua/lib.lua, reply()).
type scriptReply struct {
	Err      string               `json:"e"`
	Msg      string               `json:"m"`
	Products map[string]hashReply `json:"products"`
	Sales    map[string]hashReply `json:"sales"`
	Stream   hashReply            `json:"stream"`
	Product  hashReply            `json:"product"`
	Sale     hashReply            `json:"sale"`
	Hold     hashReply            `json:"hold"`
	Order    hashReply            `json:"order"`
	Pinned   map[string]hashReply `json:"pinned"`
	Pins     string               `json:"pins"`
	Ended    string               `json:"ended"`
	Cleared  string               `json:"cleared"`
	Changed  bool                 `json:"changed"`
	Unpinned bool                 `json:"unpinned"`
	Created  bool                 `json:"created"`
	Swept    bool                 `json:"swept"`
	Empty    bool                 `json:"empty"`
	N        int                  `json:"n"`
	Later    string               `json:"later"`
	Advanced map[string]struct {
		Changed bool   `json:"changed"`
		Next    string `json:"next"`
	} `json:"advanced"`

	// An item of a batch reply (checkoutResult) carries its changes and its new order
	// decoded (from the batch's records, decoded once): changesOf and checkoutStream
	// take them instead of Products, Sales and Order (if batched, resp. hasOrder;
	// values, not pointers: one allocation less each per checkout).
	batched  bool
	hasOrder bool
	changes  Changes
	order    Order
}

// hashReply is a record in a script's reply: lua/lib.lua packs its fields and values
// into one JSON string, each as <length>:<bytes> (decoding one string and slicing it
// costs a fraction of decoding a JSON object into a map).
type hashReply map[string]string

func (h *hashReply) UnmarshalJSON(b []byte) error {
	var packed string
	if len(b) >= 2 && b[0] == '"' && bytes.IndexByte(b, '\\') < 0 {
		packed = string(b[1 : len(b)-1])
	} else if err := json.Unmarshal(b, &packed); err != nil {
		return err
	}
	m, err := unpackHash(packed)
	*h = m
	return err
}

// unpackHash reads fields and values packed as <length>:<bytes> each.
func unpackHash(s string) (map[string]string, error) {
	m := make(map[string]string, 16)
	for s != "" {
		f, rest, err := unpackOne(s)
		if err != nil {
			return nil, err
		}
		v, rest, err := unpackOne(rest)
		if err != nil {
			return nil, err
		}
		m[f], s = v, rest
	}
	return m, nil
}

func unpackOne(s string) (string, string, error) {
	i := strings.IndexByte(s, ':')
	n, err := strconv.Atoi(s[:max(i, 0)])
	if i < 0 || err != nil || n < 0 || len(s)-i-1 < n {
		return "", "", fmt.Errorf("redis script reply: bad packed record near %.20q", s)
	}
	return s[i+1 : i+1+n], s[i+1+n:], nil
}

// flatReply is what the batch scripts (hold, checkout) answer, without JSON (see
// flat_reply in lua/lib.lua): the records of the sales and products the batch touched,
// as they are after it, then width strings per item of the batch.
type flatReply struct {
	sales, products map[string]hashReply // by id
	// sale and product are sales and products decoded, once per batch: every item of
	// a batch answers the same few records (a storm's 200 holds one sale). Each is a
	// slice of one (its capacity one: an append copies it), shared by the items'
	// Changes that name only it: read only.
	sale    map[string][]Sale
	product map[string][]Product
	slots   []string
	width   int
}

// item is the i-th item's slots (nil if the reply has fewer items).
func (r flatReply) item(i int) []string {
	if r.width == 0 || (i+1)*r.width > len(r.slots) {
		return nil
	}
	return r.slots[i*r.width : (i+1)*r.width]
}

// decodeFlat reads a batch script's reply. A run of k items whose first slot would
// be "=" comes as the one string "=<k>" (each slot costs redis-server ~0.7k
// instructions to answer; since 2026-12-06, before each such item came alone): the
// hold script's stand for width empty strings each (the last new hold's answer
// again); the checkout script's for "", "", "=" and empty strings (flags "=": the
// previous item's order; their dropped hold ids, which no caller reads, left out).
// Items are kept at full width in slots.
func decodeFlat(name string, v any, width int) (flatReply, error) {
	a, ok := v.([]any)
	if !ok || len(a) < 2 {
		return flatReply{}, fmt.Errorf("redis script %s: bad reply %T of %d", name, v, len(a))
	}
	r := flatReply{sales: records(a[0]), products: records(a[1]), width: width}
	short := name == "hold" || name == "checkout" // the script answers runs "=<k>"
	n := 0                                        // the slots at full width
	for i := 2; i < len(a); {
		if k := shortRun(a[i], short); k != 0 {
			if k < 0 {
				return flatReply{}, fmt.Errorf("redis script %s: bad reply: a run %q at slot %d", name, a[i], i-2)
			}
			i++
			n += k * width
			continue
		}
		i += width
		n += width
	}
	r.slots = make([]string, n)
	for i, j := 2, 0; i < len(a); {
		if k := shortRun(a[i], short); k > 0 {
			if name == "checkout" {
				for ; k > 0; k-- {
					r.slots[j+2] = "="
					j += width
				}
			} else {
				j += k * width
			}
			i++
			continue
		}
		if i+width > len(a) {
			return flatReply{}, fmt.Errorf("redis script %s: bad reply: an item cut at slot %d", name, i-2)
		}
		for k, x := range a[i : i+width] {
			if r.slots[j+k], ok = x.(string); !ok {
				return flatReply{}, fmt.Errorf("redis script %s: bad reply: slot %d is %T", name, i-2+k, x)
			}
		}
		i += width
		j += width
	}
	r.sale, r.product = decodeRecords(r.sales, saleFromHash), decodeRecords(r.products, productFromHash)
	return r, nil
}

// decodeRecords decodes a reply's records once, each as a slice of one (capacity one:
// an append copies it) into one array for all (see flatReply.sale); nil for none.
func decodeRecords[T any](recs map[string]hashReply, decode func(map[string]string) T) map[string][]T {
	if len(recs) == 0 {
		return nil
	}
	out := make(map[string][]T, len(recs))
	all := make([]T, 0, len(recs))
	for id, m := range recs {
		all = append(all, decode(m))
		out[id] = all[len(all)-1 : len(all) : len(all)]
	}
	return out
}

// shortRun is the number of items a reply slot v stands for when it is a run "=<k>"
// of a script answering runs (short): 0 if it is not one, -1 if its count is bad.
func shortRun(v any, short bool) int {
	s, _ := v.(string)
	if !short || len(s) == 0 || s[0] != '=' {
		return 0
	}
	k, err := strconv.Atoi(s[1:])
	if err != nil || k < 1 || k > 1<<20 {
		return -1
	}
	return k
}

// records reads a list of flat field/value arrays into records by their "id".
func records(v any) map[string]hashReply {
	list, _ := v.([]any)
	if len(list) == 0 {
		return nil
	}
	out := make(map[string]hashReply, len(list))
	for _, m := range rows(list) {
		if id := m["id"]; id != "" {
			out[id] = m
		}
	}
	return out
}

// businessErrors maps the scripts' error codes to the sentinels.
var businessErrors = map[string]error{
	"not_found":       ErrNotFound,
	"conflict":        ErrConflict,
	"sold_out":        ErrSoldOut,
	"limit_exceeded":  ErrLimitExceeded,
	"sale_not_active": ErrSaleNotActive,
	"hold_expired":    ErrHoldExpired,
}

// run runs a write script on one stream's keys. A business error comes back as the
// matching sentinel together with the reply (its touched products and sales are
// valid); any failure to talk to Redis is ErrUnavailable.
func (s *RedisStore) run(ctx context.Context, name, streamID string, args ...any) (scriptReply, error) {
	raw, err := s.scripts[name].Run(ctx, s.rdb, []string{s.base(streamID)}, args...).Text()
	if err != nil {
		return scriptReply{}, scriptError(name, err)
	}
	return decodeReply(name, raw)
}

// runFlat runs a batch script (hold, checkout) on one stream's keys by itself (see
// decodeFlat).
func (s *RedisStore) runFlat(ctx context.Context, name, streamID string, width int, args ...any) (flatReply, error) {
	v, err := s.scripts[name].Run(ctx, s.rdb, []string{s.base(streamID)}, args...).Result()
	if err != nil {
		return flatReply{}, scriptError(name, err)
	}
	return decodeFlat(name, v, width)
}

func decodeReply(name, raw string) (scriptReply, error) {
	var r scriptReply
	if err := json.Unmarshal([]byte(raw), &r); err != nil {
		return r, fmt.Errorf("redis script %s: bad reply: %w", name, err)
	}
	if r.Err != "" {
		sentinel, ok := businessErrors[r.Err]
		if !ok {
			return r, fmt.Errorf("redis script %s: unknown error %q: %s", name, r.Err, r.Msg)
		}
		return r, fmt.Errorf("%s: %w", r.Msg, sentinel)
	}
	return r, nil
}

// scriptError classifies an error of a script call: a bug in a script is a plain
// error; anything else (connection refused, timeout, LOADING, ...) is ErrUnavailable,
// and so is a command of the script that Redis refused because it cannot take writes
// now (its error keeps Redis's code in front of "script: ..., on @user_script").
func scriptError(name string, err error) error {
	msg := err.Error()
	if refusedByRedis(msg) {
		return unavailable(err)
	}
	if strings.Contains(msg, "user_script") || strings.Contains(msg, "Error running script") {
		return fmt.Errorf("redis script %s: %w", name, err)
	}
	return unavailable(err)
}

// refusedByRedis says whether an error reply is Redis refusing work for a state of
// its own (memory full, a read-only replica, a failed save, ...), not a bad command.
func refusedByRedis(msg string) bool {
	code, _, _ := strings.Cut(msg, " ")
	switch code {
	case "OOM", "READONLY", "MISCONF", "LOADING", "BUSY", "MASTERDOWN", "NOREPLICAS",
		"CLUSTERDOWN", "TRYAGAIN":
		return true
	}
	return false
}

// rows converts a script's array of flat field/value arrays into maps.
func rows(v any) []map[string]string {
	list, _ := v.([]any)
	out := make([]map[string]string, 0, len(list))
	for _, item := range list {
		flat, ok := item.([]any)
		if !ok {
			continue
		}
		m := make(map[string]string, len(flat)/2)
		for i := 0; i+1 < len(flat); i += 2 {
			k, _ := flat[i].(string)
			v, _ := flat[i+1].(string)
			m[k] = v
		}
		out = append(out, m)
	}
	return out
}

// list runs the read-only list script: the hashes of kind named by the stream's list.
func (s *RedisStore) list(ctx context.Context, streamID, listName, kind string, skip ...string) ([]map[string]string, error) {
	args := make([]any, 0, 2+len(skip))
	args = append(args, listName, kind)
	for _, id := range skip {
		args = append(args, id)
	}
	v, err := s.scripts["list"].Run(ctx, s.rdb, []string{s.base(streamID)}, args...).Result()
	if err != nil {
		return nil, scriptError("list", err)
	}
	ms := rows(v)
	if kind == "o" {
		for _, m := range ms {
			m["stream_id"] = streamID // (the record's newer form leaves it out)
			expandOrder(m)            // before sorting by created_us
		}
	}
	return ms, nil
}

// remember caches the stream of a product or sale id (it never changes).
func (s *RedisStore) remember(id, streamID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.streamOf) > 100_000 {
		clear(s.streamOf)
	}
	s.streamOf[id] = streamID
}

// indexKinds names what the stream indexes' ids are of (in a not-found, as the embedded
// store says it: "sale <id>").
var indexKinds = map[string]string{"pidx": "product", "sidx": "sale"}

// streamOfID finds the stream of a product ("pidx") or sale ("sidx") id.
func (s *RedisStore) streamOfID(ctx context.Context, index, id string) (string, error) {
	s.mu.RLock()
	sid, ok := s.streamOf[id]
	s.mu.RUnlock()
	if ok {
		return sid, nil
	}
	sid, err := s.rdb.Get(ctx, s.prefix+index+":"+id).Result()
	if errors.Is(err, redis.Nil) {
		return "", fmt.Errorf("%s %s: %w", indexKinds[index], id, ErrNotFound)
	}
	if err != nil {
		return "", unavailable(err)
	}
	s.remember(id, sid)
	return sid, nil
}

// ---- streams and audit ----

// CreateStream stores a new stream.
func (s *RedisStore) CreateStream(ctx context.Context, st Stream) error {
	// Listed first: a crash before the script leaves an id that lists nothing.
	z := redis.Z{Score: float64(st.CreatedAt.UnixMicro()), Member: st.ID}
	if err := s.rdb.ZAddNX(ctx, s.prefix+"streams", z).Err(); err != nil {
		return unavailable(err)
	}
	args := []any{
		"id", st.ID, "title", st.Title, "creator_id", st.CreatorID, "status", string(st.Status),
		"stream_key", st.StreamKey, "created_at", formatTime(st.CreatedAt),
		"started_at", formatTimePtr(st.StartedAt), "ended_at", formatTimePtr(st.EndedAt),
	}
	_, err := s.run(ctx, "stream_create", st.ID, args...)
	return err
}

// GetStream returns one stream.
func (s *RedisStore) GetStream(ctx context.Context, id string) (Stream, error) {
	m, err := s.rdb.HGetAll(ctx, s.base(id)+"stream").Result()
	if err != nil {
		return Stream{}, unavailable(err)
	}
	if len(m) == 0 {
		return Stream{}, fmt.Errorf("stream %s: %w", id, ErrNotFound)
	}
	return streamFromHash(m), nil
}

// ListStreams returns the streams that are not ended, oldest first.
func (s *RedisStore) ListStreams(ctx context.Context) ([]Stream, error) {
	ids, err := s.rdb.ZRange(ctx, s.prefix+"streams", 0, -1).Result()
	if err != nil {
		return nil, unavailable(err)
	}
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, len(ids))
	for i, id := range ids {
		cmds[i] = pipe.HGetAll(ctx, s.base(id)+"stream")
	}
	if len(ids) > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, unavailable(err)
		}
	}
	out := []Stream{}
	for _, c := range cmds {
		if m := c.Val(); len(m) > 0 && m["status"] != string(StreamEnded) {
			out = append(out, streamFromHash(m))
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	return out, nil
}

// SetStreamLive records the publisher's arrival or leave (stream_live.lua: fields
// publisher and publisher_left of the stream hash fence late writes).
func (s *RedisStore) SetStreamLive(ctx context.Context, id, session string, live bool, now time.Time) (Stream, bool, error) {
	r, err := s.run(ctx, "stream_live", id, flag(live), formatTime(now), session)
	if err != nil {
		return Stream{}, false, err
	}
	return streamFromHash(r.Stream), r.Changed, nil
}

// SetMediaMute changes the stream's media mute: fields audio_muted and video_muted of
// its stream hash, set by one script (check and partial update are atomic).
func (s *RedisStore) SetMediaMute(ctx context.Context, id string, audio, video *bool) (MediaMute, error) {
	r, err := s.run(ctx, "media_mute", id, optFlag(audio), optFlag(video))
	if err != nil {
		return MediaMute{}, err
	}
	return mediaMuteFromHash(r.Stream), nil
}

// MediaMute returns the stream's media mute.
func (s *RedisStore) MediaMute(ctx context.Context, id string) (MediaMute, error) {
	v, err := s.rdb.HMGet(ctx, s.base(id)+"stream", "id", "audio_muted", "video_muted").Result()
	if err != nil {
		return MediaMute{}, unavailable(err)
	}
	if v[0] == nil {
		return MediaMute{}, fmt.Errorf("stream %s: %w", id, ErrNotFound)
	}
	return MediaMute{AudioMuted: v[1] == "1", VideoMuted: v[2] == "1"}, nil
}

// optFlag encodes an optional bool for a script: "" leaves the value as it is.
func optFlag(b *bool) string {
	if b == nil {
		return ""
	}
	return flag(*b)
}

func mediaMuteFromHash(m map[string]string) MediaMute {
	return MediaMute{AudioMuted: m["audio_muted"] == "1", VideoMuted: m["video_muted"] == "1"}
}

// EndStream ends the stream and its scheduled and active sales.
func (s *RedisStore) EndStream(ctx context.Context, id string, now time.Time) (Stream, []Sale, error) {
	r, err := s.run(ctx, "stream_end", id, formatTime(now), micros(now))
	if err != nil {
		return Stream{}, nil, err
	}
	sales := []Sale{}
	for _, said := range splitList(r.Ended, ",") {
		sales = append(sales, saleFromHash(r.Sales[said]))
	}
	// The stream is no longer listed; if this fails, ListStreams filters it anyway.
	if err := s.rdb.ZRem(ctx, s.prefix+"streams", id).Err(); err != nil {
		return Stream{}, nil, unavailable(err)
	}
	return streamFromHash(r.Stream), sales, nil
}

// AppendAudit records an audit entry.
func (s *RedisStore) AppendAudit(ctx context.Context, e AuditEntry) error {
	raw, err := json.Marshal(e)
	if err != nil {
		return err
	}
	return unavailable(s.rdb.RPush(ctx, s.base(e.StreamID)+"audit", raw).Err())
}

// ListAudit returns the stream's audit entries, oldest first.
func (s *RedisStore) ListAudit(ctx context.Context, streamID string) ([]AuditEntry, error) {
	raws, err := s.rdb.LRange(ctx, s.base(streamID)+"audit", 0, -1).Result()
	if err != nil {
		return nil, unavailable(err)
	}
	out := make([]AuditEntry, 0, len(raws))
	for _, raw := range raws {
		var e AuditEntry
		if err := json.Unmarshal([]byte(raw), &e); err != nil {
			return nil, fmt.Errorf("audit entry: %w", err)
		}
		out = append(out, e)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].At.Before(out[j].At) })
	return out, nil
}
