package cart

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
)

// TestRedisProductUnitsOfOlderRecord: a product stored by a version that kept no units
// put in (its field of putin gone) still loads, sells and ends its sales, and comes
// with its units put in unknown (not 0); products of the same stream keep theirs.
func TestRedisProductUnitsOfOlderRecord(t *testing.T) {
	st := openTestRedis(t, testRedisURL)
	e := &env{st: st, ctx: context.Background(), now: time.Now(), putIn: map[string]int{}}
	sid := e.stream(t)
	old, cur := e.product(t, sid, 8), e.product(t, sid, 4)
	if err := st.rdb.HDel(e.ctx, st.base(sid)+"putin", old.ID).Err(); err != nil {
		t.Fatal(err)
	}
	delete(e.putIn, old.ID)
	s, _, err := st.CreateSale(e.ctx, Sale{ID: uuid.NewString(), StreamID: sid, ProductID: old.ID, PriceCents: 1,
		Quantity: 5, PerUserLimit: 5, StartsAt: e.now, EndsAt: e.now.Add(time.Hour)}, e.now, 0)
	if err != nil {
		t.Fatal(err)
	}
	e.mustHold(t, "u", "", s.ID, 2, time.Hour)
	e.mustHold(t, "u", old.ID, "", 1, time.Hour)
	if _, _, _, err := st.StopSale(e.ctx, s.ID, e.now); err != nil {
		t.Fatal(err)
	}
	us, err := st.GetProductUnits(e.ctx, []string{old.ID, cur.ID})
	if err != nil || len(us) != 2 {
		t.Fatalf("GetProductUnits: %v %v, want 2 products", us, err)
	}
	if u := us[0]; u.Product.ID != old.ID || u.PutInKnown || u.PutIn != 0 || u.Product.Stock != 5 || u.Product.Held != 1 || u.InSales != 2 {
		t.Errorf("older product: got %+v, want its units put in unknown, stock 5, held 1, 2 in sales", u)
	}
	if u := us[1]; u.Product.ID != cur.ID || !u.PutInKnown || u.PutIn != 4 {
		t.Errorf("newer product: got %+v, want 4 put in", u)
	}
	e.checkInvariants(t)
}

// TestRedisProductUnitsScriptLost: the units script runs in a pipeline (EVALSHA); when
// Redis has lost its script cache (SCRIPT FLUSH, as after a restart) the read still
// answers (on a private redis-server: the flush is server-wide).
func TestRedisProductUnitsScriptLost(t *testing.T) {
	st := openTestRedis(t, startRedisServer(t).url())
	e := &env{st: st, ctx: context.Background(), now: time.Now(), putIn: map[string]int{}}
	a, b := e.product(t, e.stream(t), 3), e.product(t, e.stream(t), 9)
	if err := st.rdb.ScriptFlush(e.ctx).Err(); err != nil {
		t.Fatal(err)
	}
	us, err := st.GetProductUnits(e.ctx, []string{a.ID, b.ID})
	if err != nil || len(us) != 2 || us[0].PutIn != 3 || us[1].PutIn != 9 || !us[0].PutInKnown || !us[1].PutInKnown {
		t.Fatalf("GetProductUnits after SCRIPT FLUSH: %+v %v, want 3 and 9 put in", us, err)
	}
	e.checkInvariants(t)
}
