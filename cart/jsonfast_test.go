package cart

import (
	"encoding/json"
	bolt "go.etcd.io/bbolt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
)

// jsonStrings are strings whose encoding differs in every way encoding/json knows.
var jsonStrings = []string{
	"", "plain", "0190f3a4-1b2c-7d3e-8f40-123456789abc", "user\x00000000000000002a",
	`quo"te`, `back\slash`, "<b>&amp;</b>", "tab\tnew\nline\rcr", "\b\f\x01\x1f\x7f",
	"ünïcødé €", "\u2028\u2029", "bad utf8 \xff\xfe", "\x00", "a\x00b\x00", `\u0000`,
}

var jsonTimes = []time.Time{
	time.Date(2026, 12, 2, 1, 2, 3, 0, time.UTC),
	time.Date(2026, 12, 2, 1, 2, 3, 456789000, time.UTC),
	time.Date(2026, 12, 2, 1, 2, 3, 100, time.UTC),
	time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), // the zero time
	time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
	time.Date(2026, 12, 2, 1, 2, 3, 5, time.FixedZone("x", 3600)),
	time.Date(2026, 12, 2, 1, 2, 3, 5, time.FixedZone("y", -5*3600-30*60)),
}

func sampleHolds() []boltHold {
	var out []boltHold
	for i, s := range jsonStrings {
		for j, t := range jsonTimes {
			h := boltHold{Hold: Hold{ID: newID(), UserID: "ignored", StreamID: s, ProductID: newID(),
				Quantity: i - 3, UnitPriceCents: int64(j) * -1234567890123, Currency: "EUR",
				ExpiresAt: t, Expired: i%2 == 0}, User: s, Released: j%2 == 1, CartKey: join(s, "000000000000002a")}
			if (i+j)%3 != 0 {
				h.SaleID = s
			}
			out = append(out, h)
		}
	}
	return out
}

func TestRecordJSONMatchesEncodingJSON(t *testing.T) {
	for _, h := range sampleHolds() {
		want, _ := json.Marshal(h)
		got, err := marshalRecord(h)
		if err != nil || string(got) != string(want) {
			t.Fatalf("boltHold:\n got %s %v\nwant %s", got, err, want)
		}
		if got, _ = marshalRecord(&h); string(got) != string(want) {
			t.Fatalf("*boltHold:\n got %s\nwant %s", got, want)
		}
		want, _ = json.Marshal(h.Hold)
		if got, ok := h.Hold.AppendJSON([]byte("x")); !ok || string(got) != "x"+string(want) {
			t.Fatalf("Hold:\n got %s\nwant x%s", got, want)
		}
		idem := boltIdem{Fingerprint: h.StreamID, OrderID: h.ID, At: h.ExpiresAt}
		want, _ = json.Marshal(idem)
		if got, _ = marshalRecord(idem); string(got) != string(want) {
			t.Fatalf("boltIdem:\n got %s\nwant %s", got, want)
		}
	}
	for i, s := range jsonStrings {
		for j, ct := range jsonTimes {
			o := Order{ID: newID(), UserID: s, StreamID: s, TotalCents: int64(i * j), Currency: s, Status: "placed", CreatedAt: ct}
			switch (i + j) % 4 {
			case 1:
				o.Items, o.ExpiredHoldIDs = []OrderItem{}, []string{}
			case 2:
				o.Items = []OrderItem{{ProductID: s, Quantity: 1, UnitPriceCents: 50}}
				o.ExpiredHoldIDs = []string{s}
			case 3:
				o.Items = []OrderItem{{ProductID: s, SaleID: s, Quantity: -2, UnitPriceCents: -7}, {ProductID: "p", SaleID: "s"}}
				o.ExpiredHoldIDs = []string{"a", s, "b"}
			}
			want, _ := json.Marshal(o)
			got, err := marshalRecord(o)
			if err != nil || string(got) != string(want) {
				t.Fatalf("Order:\n got %s %v\nwant %s", got, err, want)
			}
			if got, ok := o.AppendJSON(nil); !ok || string(got) != string(want) {
				t.Fatalf("Order.AppendJSON:\n got %s\nwant %s", got, want)
			}
		}
	}
}

// Times json.Marshal refuses are refused the same way (an error, not other bytes).
func TestRecordJSONBadTime(t *testing.T) {
	bad := time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, v := range []any{boltHold{Hold: Hold{ExpiresAt: bad}}, &boltHold{Hold: Hold{ExpiresAt: bad}},
		Order{CreatedAt: bad}, boltIdem{At: bad}} {
		if _, err := marshalRecord(v); err == nil {
			t.Fatalf("%T: no error for year 10000", v)
		}
	}
	if b, ok := (Hold{ExpiresAt: bad}).AppendJSON([]byte("x")); ok || string(b) != "x" {
		t.Fatalf("Hold.AppendJSON: %q %v", b, ok)
	}
	if b, ok := (Order{CreatedAt: time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)}).AppendJSON(nil); ok || len(b) != 0 {
		t.Fatalf("Order.AppendJSON: %q %v", b, ok)
	}
}

// decodeBoth decodes raw with unmarshalRecord and with json.Unmarshal into fresh values
// of the same type and fails unless both agree (value and error or not).
func decodeBoth[T any](t *testing.T, raw []byte) {
	t.Helper()
	var got, want T
	errGot, errWant := unmarshalRecord(raw, &got), json.Unmarshal(raw, &want)
	if (errGot == nil) != (errWant == nil) || !reflect.DeepEqual(got, want) {
		t.Fatalf("%T from %q:\n got %+v (%v)\nwant %+v (%v)", got, raw, got, errGot, want, errWant)
	}
	if _, hold := any(got).(boltHold); hold {
		sharedMatches(t, raw)
	}
}

// sharedMatches checks boltHold.decodeShared against json.Unmarshal: where it decodes
// raw, json.Unmarshal does too, to the same hold.
func sharedMatches(t *testing.T, raw []byte) {
	t.Helper()
	var got, want boltHold
	errWant := json.Unmarshal(raw, &want)
	if got.decodeShared(raw) && (errWant != nil || !reflect.DeepEqual(got, want)) {
		t.Fatalf("decodeShared from %q:\n got %+v\nwant %+v (%v)", raw, got, want, errWant)
	}
}

func TestRecordDecodeMatchesEncodingJSON(t *testing.T) {
	for _, h := range sampleHolds() {
		raw, _ := marshalRecord(h)
		decodeBoth[boltHold](t, raw)
		idem, _ := marshalRecord(boltIdem{Fingerprint: h.CartKey, OrderID: h.User, At: h.ExpiresAt})
		decodeBoth[boltIdem](t, idem)
	}
	// The records a sale writes take the fast path.
	h := boltHold{Hold: Hold{ID: newID(), StreamID: newID(), ProductID: newID(), SaleID: newID(), Quantity: 1,
		UnitPriceCents: 50, Currency: "EUR", ExpiresAt: time.Now().UTC()}, User: "buyer-1", CartKey: join("buyer-1", "000000000000002a")}
	raw, _ := marshalRecord(h)
	var gotHold boltHold
	if !gotHold.decodeFast(raw) || !reflect.DeepEqual(gotHold, h) {
		t.Fatalf("fast path: %+v, want %+v", gotHold, h)
	}
	var shared boltHold
	if !shared.decodeShared(raw) || !reflect.DeepEqual(shared, h) {
		t.Fatalf("shared: %+v, want %+v", shared, h)
	}
	// A hold as HoldUnits writes it (its cart key a userKey): one allocation.
	h.CartKey = string(appendSeqHex(userKey(h.User, kindCart, ""), 42))
	raw, _ = marshalRecord(h)
	if !shared.decodeShared(raw) || !reflect.DeepEqual(shared, h) {
		t.Fatalf("shared: %+v, want %+v", shared, h)
	}
	if n := testing.AllocsPerRun(100, func() { shared.decodeShared(raw) }); n != 1 {
		t.Errorf("decodeShared of a sale's hold: %v allocations, want 1 (the record's copy)", n)
	}
	raw, _ = marshalRecord(boltIdem{Fingerprint: "f", OrderID: h.ID, At: h.ExpiresAt})
	var gotIdem boltIdem
	if !gotIdem.decodeFast(raw) || !gotIdem.At.Equal(h.ExpiresAt) || gotIdem.At.Location() != time.UTC {
		t.Fatalf("fast path: %+v", gotIdem)
	}
	// Shapes the encoders never write: json.Unmarshal decides.
	odd := []string{
		`{}`, `{"id":"a"}`, `{"ID":"a","Quantity":3}`, `{"id":"a","id":"b"}`, `{ "id" : "a" }`,
		`{"quantity":01}`, `{"quantity":1e2}`, `{"quantity":-0}`, `{"quantity":1.0}`, `{"quantity":99999999999999999999}`,
		`{"quantity":null}`, `{"id":null}`, `{"expired":True}`, `{"expired":true,}`, `{"id":"a"`, `{"id":"a"}}`,
		`{"id":"a\u0041"}`, `{"id":"\\u0000"}`, `{"id":"\u00000"}`, `{"id":"a\"b"}`, `{"id":"tab	x"}`,
		`{"id":"\xff"}`, `{"id":"ü"}`, `{"expires_at":"2026-12-02T01:02:03Z"}`, `{"expires_at":"2026-12-02T01:02:03.000Z"}`,
		`{"expires_at":"2026-12-02T01:02:03+01:00"}`, `{"expires_at":"2026-12-02T1:02:03Z"}`, `{"expires_at":"2026-12-02T01:02:03,5Z"}`,
		`{"expires_at":"2026-12-02 01:02:03Z"}`, `{"expires_at":"0001-01-01T00:00:00Z"}`, `{"expires_at":null}`, `{"at":"garbage"}`,
		`{"user":"u","extra":{"nested":[1,2]}}`, `{"fp":"f","order_id":"o","at":"2026-12-02T01:02:03.5Z","more":1}`,
		`[]`, `null`, ``, `{`, `{"a"}`, `{"a":}`, `{"cart_key":"u\u0000x","released":false}`,
	}
	for _, s := range odd {
		decodeBoth[boltHold](t, []byte(s))
		decodeBoth[boltIdem](t, []byte(s))
	}
	// Random corruptions of real records.
	r := rand.New(rand.NewPCG(1, 2))
	for _, h := range sampleHolds() {
		raw, _ := marshalRecord(h)
		for k := 0; k < 20; k++ {
			b := []byte(string(raw))
			switch r.IntN(3) {
			case 0:
				b[r.IntN(len(b))] = byte(r.IntN(128))
			case 1:
				i := r.IntN(len(b))
				b = append(b[:i], b[i+1:]...)
			case 2:
				i := r.IntN(len(b))
				b = []byte(string(b[:i]) + string(`",:{}[]\ 0e-tn`[r.IntN(14)]) + string(b[i:]))
			}
			decodeBoth[boltHold](t, b)
			decodeBoth[boltIdem](t, []byte(strings.Replace(string(b), `"id"`, `"fp"`, 1)))
		}
	}
}

func BenchmarkRecordJSON(b *testing.B) {
	h := boltHold{Hold: Hold{ID: newID(), StreamID: newID(), ProductID: newID(), SaleID: newID(), Quantity: 1,
		UnitPriceCents: 50, Currency: "EUR", ExpiresAt: time.Now().UTC()}, User: "buyer-1", CartKey: join("buyer-1", "000000000000002a")}
	raw, _ := json.Marshal(h)
	b.Run("encode/json", func(b *testing.B) {
		for b.Loop() {
			_, _ = json.Marshal(h)
		}
	})
	b.Run("encode/hand", func(b *testing.B) {
		for b.Loop() {
			_, _ = marshalRecord(h)
		}
	})
	b.Run("decode/json", func(b *testing.B) {
		for b.Loop() {
			var v boltHold
			_ = json.Unmarshal(raw, &v)
		}
	})
	b.Run("decode/hand", func(b *testing.B) {
		for b.Loop() {
			var v boltHold
			_ = unmarshalRecord(raw, &v)
		}
	})
}

// appendIndex keys are the prefix, NUL and the sequence as 16 hex digits.
func TestAppendIndexKey(t *testing.T) {
	s, err := OpenBolt(t.TempDir() + "/x.db")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	err = s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketStreamOrders)
		if err := b.SetSequence(0xfedcba987654320); err != nil {
			return err
		}
		key, err := appendIndex(b, "user\x00x", "v")
		if want := "user\x00x\x000fedcba987654321"; key != want || string(b.Get([]byte(want))) != "v" {
			t.Errorf("key %q, want %q", key, want)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestNewItemSaleIDShared: holds naming the sale the one before named share its id's
// string (no heap copy per hold), and one naming another sale, or the same id
// written otherwise, decodes as before.
func TestNewItemSaleIDShared(t *testing.T) {
	const a, b = "0190f3a4-1b2c-7d3e-8f40-123456789abc", "0190f3a4-1b2c-7d3e-8f40-123456789abd"
	for _, tc := range []struct{ body, want string }{
		{`{"sale_id":"` + a + `","quantity":1}`, a},
		{`{"quantity":2,"sale_id":"` + a + `"}`, a},
		{`{"sale_id":"` + b + `","quantity":1}`, b},
		{`{"sale_id":"` + a + `","quantity":1}`, a},
		{`{"sale_id":"x` + a + `","quantity":1}`, "x" + a},
	} {
		var in NewItem
		if !in.DecodeFastJSON([]byte(tc.body)) || in.SaleID != tc.want {
			t.Fatalf("%s: sale_id %q, want %q", tc.body, in.SaleID, tc.want)
		}
	}
	for _, bad := range []string{`{"sale_id":"x` + a + `,"quantity":1}`, `{"sale_id":` + a + `,"quantity":1}`, `{"sale_id":"` + a[:35] + `\"","quantity":1}`} {
		var in NewItem
		if in.DecodeFastJSON([]byte(bad)) {
			t.Fatalf("%s: decoded as %+v", bad, in)
		}
	}
	body := []byte(`{"sale_id":"` + a + `","quantity":1}`)
	var in NewItem
	in.DecodeFastJSON(body)
	// One allocation left: the quantity's int.
	if n := testing.AllocsPerRun(100, func() { in = NewItem{}; in.DecodeFastJSON(body) }); n != 1 {
		t.Fatalf("DecodeFastJSON of the last sale's hold: %v allocations, want 1", n)
	}
}

// BenchmarkDecodeNewItem: a hold's body, naming the sale the one before named (a
// storm's), and naming another sale each time (as every hold did before lastSaleID).
func BenchmarkDecodeNewItem(b *testing.B) {
	bodies := [2][]byte{[]byte(`{"sale_id":"0190f3a4-1b2c-7d3e-8f40-123456789abc","quantity":1}`),
		[]byte(`{"sale_id":"0190f3a4-1b2c-7d3e-8f40-123456789abd","quantity":1}`)}
	for _, bc := range []struct {
		name string
		step int
	}{{"same-sale", 0}, {"other-sale-each", 1}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				var in NewItem
				if !in.DecodeFastJSON(bodies[i&1]) {
					b.Fatal("not decoded")
				}
				i += bc.step
			}
		})
	}
}
