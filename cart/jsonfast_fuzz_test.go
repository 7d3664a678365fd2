package cart

import (
	"encoding/json"
	"testing"
	"time"
)

// FuzzRecordJSON: the hand-written encoders write json.Marshal's bytes and the
// hand-written decoders read them back as json.Unmarshal does, for any strings,
// numbers and times.
func FuzzRecordJSON(f *testing.F) {
	for i, s := range jsonStrings {
		f.Add(s, "EUR", join(s, "x"), i-3, int64(i)*-1234567890123, int64(1796000000+i), int64(i*1000), int32(0), i%2 == 0)
	}
	f.Fuzz(func(t *testing.T, s, cur, key string, q int, price, sec, nsec int64, off int32, flag bool) {
		off %= 24 * 3600
		at := time.Unix(sec, nsec).In(time.FixedZone("z", int(off)))
		if off == 0 {
			at = at.UTC()
		}
		h := boltHold{Hold: Hold{ID: s, UserID: key, StreamID: cur, ProductID: key, SaleID: s, Quantity: q,
			UnitPriceCents: price, Currency: cur, ExpiresAt: at, Expired: flag}, User: s, Released: !flag, CartKey: key}
		o := Order{ID: key, UserID: s, StreamID: cur, Items: []OrderItem{{ProductID: s, SaleID: key, Quantity: q, UnitPriceCents: price}},
			TotalCents: price, Currency: cur, Status: s, CreatedAt: at, ExpiredHoldIDs: []string{s, key}}
		if flag {
			o.Items, o.ExpiredHoldIDs = nil, nil
		}
		idem := boltIdem{Fingerprint: s, OrderID: key, At: at}
		for _, v := range []any{h, &h, o, idem} {
			want, errWant := json.Marshal(v)
			got, errGot := marshalRecord(v)
			if (errGot == nil) != (errWant == nil) || string(got) != string(want) {
				t.Fatalf("%T:\n got %s (%v)\nwant %s (%v)", v, got, errGot, want, errWant)
			}
		}
		want, errWant := json.Marshal(h.Hold)
		if got, ok := h.Hold.AppendJSON(nil); ok != (errWant == nil) || (ok && string(got) != string(want)) {
			t.Fatalf("Hold.AppendJSON:\n got %s %v\nwant %s (%v)", got, ok, want, errWant)
		}
		want, errWant = json.Marshal(o)
		if got, ok := o.AppendJSON(nil); ok != (errWant == nil) || (ok && string(got) != string(want)) {
			t.Fatalf("Order.AppendJSON:\n got %s %v\nwant %s (%v)", got, ok, want, errWant)
		}
		if raw, err := marshalRecord(h); err == nil {
			decodeBoth[boltHold](t, raw)
		}
		if raw, err := marshalRecord(idem); err == nil {
			decodeBoth[boltIdem](t, raw)
		}
	})
}

// FuzzRecordDecode: unmarshalRecord reads any bytes as json.Unmarshal does.
func FuzzRecordDecode(f *testing.F) {
	for _, h := range sampleHolds() {
		raw, _ := marshalRecord(h)
		f.Add(raw)
		raw, _ = marshalRecord(boltIdem{Fingerprint: h.StreamID, OrderID: h.ID, At: h.ExpiresAt})
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		decodeBoth[boltHold](t, raw)
		decodeBoth[boltIdem](t, raw)
	})
}
