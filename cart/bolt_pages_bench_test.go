package cart

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/google/uuid"
	bolt "go.etcd.io/bbolt"
)

// BenchmarkBoltStormGroups replays loadgen's sale storms on the embedded store in group
// commits of a fixed size, so what one group commit writes is exact (no scheduling in
// it): buyers named like loadgen's hold one unit of a fresh sale each storm and check
// out with a fresh Idempotency-Key, in a random order; group k holds for the k-th slice
// of buyers and checks out the (k-1)-th. warm storms run first (the file then holds
// their orders and keys, as a server does after a few loadgen runs). One op is one
// buyer (hold + checkout); the clock moves 10 ms per group. Reported per group commit: pages (page writes of the
// commit, meta page not counted) and KB written; the run is NoSync, so ns/op and
// allocs/op are the writer's own work without the two fdatasyncs.
//
//	go test ./cart -run '^$' -bench BoltStormGroups -benchtime 20000x -count 3
func BenchmarkBoltStormGroups(b *testing.B) {
	for _, buyers := range []int{1000, 5000} {
		for _, group := range []int{50, 150} {
			b.Run(fmt.Sprintf("buyers=%d/group=%d", buyers, group), func(b *testing.B) {
				benchStormGroups(b, buyers, group, 4)
			})
		}
	}
}

func benchStormGroups(b *testing.B, buyers, group, warm int) {
	// The benchmark commits groups itself, beside the writer goroutine: that one must
	// not index the order log when idle (the groups index it when it is full).
	st, err := openBolt(b.TempDir()+"/storm.db", boltTuning{indexBatch: defaultTuning.indexBatch, indexIdle: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	st.db.NoSync = true
	ctx, now := context.Background(), time.Now().UTC()
	rng := rand.New(rand.NewPCG(1, 2))
	users := make([]string, buyers)
	for i := range users {
		users[i] = fmt.Sprintf("buyer-%d-%d", 1764644742123456789, i)
	}
	var (
		saleID  string
		storm   int
		order   []int // this storm's arrival order
		pos     int
		pending []int // buyers holding, to check out in the next group
	)
	newStorm := func() {
		storm++
		sid := uuid.NewString()
		if err := st.CreateStream(ctx, Stream{ID: sid, Status: StreamLive, CreatedAt: now}); err != nil {
			b.Fatal(err)
		}
		p, err := st.CreateProduct(ctx, Product{ID: newID(), StreamID: sid, PriceCents: 100, Currency: "EUR", Stock: buyers}, 0)
		if err != nil {
			b.Fatal(err)
		}
		s, _, err := st.CreateSale(ctx, Sale{ID: newID(), StreamID: sid, ProductID: p.ID, PriceCents: 50,
			Quantity: buyers, PerUserLimit: 1, StartsAt: now, EndsAt: now.Add(time.Hour)}, now, 0)
		if err != nil {
			b.Fatal(err)
		}
		saleID, order, pos = s.ID, rng.Perm(buyers), 0
	}
	var commits, pages, bytes int64
	var perBucket map[string]int // LIVECART_BENCH_BUCKETS=1: bytes of the nodes written, per bucket
	if os.Getenv("LIVECART_BENCH_BUCKETS") != "" {
		perBucket = map[string]int{}
	}
	// step commits one group: holds for up to n new buyers of the storm, checkouts for
	// the buyers of the previous group. It returns the number of holds.
	fp := CheckoutInput{}.fingerprint()
	step := func(n int) int {
		now = now.Add(10 * time.Millisecond) // a group commit's time
		var calls []*groupCall
		answers := make([]error, 0, 2*group)
		add := func(fn func(*boltTx) error) {
			answers = append(answers, nil)
			calls = append(calls, &groupCall{fn: groupFn(fn, &answers[len(answers)-1]), done: make(chan error, 1)})
		}
		for _, u := range pending {
			add(func(t *boltTx) error {
				_, _, err := t.checkout(CheckoutRequest{OrderID: newID(), UserID: users[u],
					IdempotencyKey: fmt.Sprint("loadgen-", storm, "-", u), Fingerprint: fp}, now)
				return err
			})
		}
		pending = pending[:0]
		for ; n > 0 && pos < len(order); n, pos = n-1, pos+1 {
			u := order[pos]
			pending = append(pending, u)
			add(func(t *boltTx) error {
				_, err := t.holdUnits(HoldRequest{ID: newID(), UserID: users[u], SaleID: saleID,
					Quantity: 1, ExpiresAt: now.Add(time.Minute)}, now)
				return err
			})
		}
		var tx *bolt.Tx
		calls = append(calls, &groupCall{fn: func(g *groupTx) error {
			tx = g.tx
			if perBucket != nil {
				g.flush()
				tx.ForEach(func(name []byte, b *bolt.Bucket) error {
					nodes := reflect.ValueOf(b).Elem().FieldByName("nodes")
					for it := nodes.MapRange(); it.Next(); {
						in := it.Value().Elem().FieldByName("inodes")
						size := 16
						for i := range in.Len() {
							e := in.Index(i)
							size += 16 + e.FieldByName("key").Len() + e.FieldByName("value").Len()
						}
						perBucket[string(name)] += size
					}
					return nil
				})
			}
			return nil
		}, done: make(chan error, 1)})
		st.commitGroup(calls)
		for i, c := range calls {
			if err := <-c.done; err != nil {
				b.Fatal(err)
			}
			if i < len(answers) && answers[i] != nil {
				b.Fatal(answers[i])
			}
		}
		s := tx.Stats()
		commits++
		pages += s.GetWrite()
		bytes += s.GetPageAlloc()
		return len(pending)
	}
	for range warm {
		newStorm()
		for pos < len(order) || len(pending) > 0 {
			step(group)
		}
	}
	newStorm()
	commits, pages, bytes = 0, 0, 0
	clear(perBucket)
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; {
		if pos == len(order) && len(pending) == 0 {
			b.StopTimer()
			newStorm()
			b.StartTimer()
		}
		done += step(min(group, b.N-done))
	}
	for len(pending) > 0 { // the last checkouts
		step(0)
	}
	b.StopTimer()
	for name, n := range perBucket {
		if n > 0 {
			fmt.Fprintf(os.Stderr, "%s %-16s %7.1f KB/commit (nodes before splits)\n", b.Name(), name, float64(n)/1024/float64(commits))
		}
	}
	b.ReportMetric(float64(pages)/float64(commits), "pages/commit")
	b.ReportMetric(float64(bytes)/1024/float64(commits), "KB/commit")
	b.ReportMetric(float64(pages)/float64(b.N), "pages/buyer")
}

// BenchmarkBoltListOrdersFullLog: a buyer's order listing when the order log is as full
// as it gets before the writer indexes it (defaultTuning.indexBatch − 1 orders, one of
// them the buyer's).
//
//	go test ./cart -run '^$' -bench BoltListOrdersFullLog
func BenchmarkBoltListOrdersFullLog(b *testing.B) {
	st, err := openBolt(b.TempDir()+"/list.db", boltTuning{indexBatch: defaultTuning.indexBatch, indexIdle: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	st.db.NoSync = true
	ctx, now := context.Background(), time.Now().UTC()
	sid := uuid.NewString()
	if err := st.CreateStream(ctx, Stream{ID: sid, Status: StreamLive, CreatedAt: now}); err != nil {
		b.Fatal(err)
	}
	n := defaultTuning.indexBatch - 1
	p, err := st.CreateProduct(ctx, Product{ID: newID(), StreamID: sid, PriceCents: 100, Currency: "EUR", Stock: n}, 0)
	if err != nil {
		b.Fatal(err)
	}
	for lo := 0; lo < n; lo += 500 {
		err := st.update(func(t *boltTx) error {
			for i := lo; i < min(lo+500, n); i++ {
				user := fmt.Sprintf("buyer-%d-%d", 1764644742123456789, i)
				if _, err := t.holdUnits(HoldRequest{ID: newID(), UserID: user, ProductID: p.ID, Quantity: 1, ExpiresAt: now.Add(time.Hour)}, now); err != nil {
					return err
				}
				if _, _, err := t.checkout(CheckoutRequest{OrderID: newID(), UserID: user, IdempotencyKey: "k"}, now); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	if logged, _ := (&indexFixture{t: b, st: st}).counts(); logged != n {
		b.Fatalf("%d orders in the log, want %d", logged, n)
	}
	user := fmt.Sprintf("buyer-%d-%d", 1764644742123456789, n/2)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if os, err := st.ListOrders(ctx, user); err != nil || len(os) != 1 {
			b.Fatalf("ListOrders: %d orders, %v", len(os), err)
		}
	}
}
