package cart

import (
	"context"
	"testing"

	"github.com/google/uuid"
)

// TestBoltProductUnitsOfOlderFile: a file written before the units put in were kept
// (testdata/bolt-layout3.db.gz) opens, and its products come with their units put in
// unknown (not 0); a product created after the open has them.
func TestBoltProductUnitsOfOlderFile(t *testing.T) {
	st, err := OpenBolt(openLayoutFixture(t, "bolt-layout3.db.gz"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	p, err := st.CreateProduct(ctx, Product{ID: uuid.NewString(), StreamID: lfStream, Currency: "EUR", Stock: 6}, 0)
	if err != nil {
		t.Fatal(err)
	}
	us, err := st.GetProductUnits(ctx, []string{lfProduct, lfPlain, p.ID})
	if err != nil || len(us) != 3 {
		t.Fatalf("GetProductUnits: %v %v, want 3 products", us, err)
	}
	// lfProduct: 20, 10 of them in the sale; lfPlain: 5, 1 sold and 3 held (layout fixture).
	for i, w := range []struct {
		id             string
		stock, inSales int
	}{{lfProduct, 10, 10}, {lfPlain, 1, 0}} {
		u := us[i]
		if u.Product.ID != w.id || u.Product.Stock != w.stock || u.InSales != w.inSales {
			t.Errorf("older product %d: got %s stock %d in sales %d, want %s %d %d", i, u.Product.ID, u.Product.Stock, u.InSales, w.id, w.stock, w.inSales)
		}
		if u.PutInKnown || u.PutIn != 0 {
			t.Errorf("older product %s: units put in %d known %v, want unknown", u.Product.ID, u.PutIn, u.PutInKnown)
		}
		if _, known := u.InvariantOK(); known {
			t.Errorf("older product %s: InvariantOK says known", u.Product.ID)
		}
	}
	if u := us[2]; !u.PutInKnown || u.PutIn != 6 {
		t.Errorf("new product in the older file: units put in %d known %v, want 6", u.PutIn, u.PutInKnown)
	}
	checkStreamInvariants(t, st, lfStream, map[string]int{p.ID: 6}) // the older ones are unknown to the store
}
