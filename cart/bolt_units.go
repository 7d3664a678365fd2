package cart

import (
	"context"
	"errors"
	"fmt"
	"strconv"
)

// bucketPutIn keeps each product's units put in (its stock at creation, as decimal
// digits), written by CreateProduct in the product's transaction; products created
// before 2026-12-05 have no entry (their units put in are unknown). It is apart from
// the product's record so that the record, which every hold of the product rewrites,
// stays as it was.
var bucketPutIn = []byte("product_put_in") // product id → units put in

// putIn reads the product's units put in.
func (t *boltTx) putIn(productID string) (n int, known bool, err error) {
	raw := t.b(bucketPutIn).Get([]byte(productID))
	if raw == nil {
		return 0, false, nil
	}
	if n, err = strconv.Atoi(string(raw)); err != nil {
		return 0, false, fmt.Errorf("product %s: units put in %q: %w", productID, raw, err)
	}
	return n, true, nil
}

// GetProductUnits reads the products and their sales in one read transaction.
func (s *BoltStore) GetProductUnits(ctx context.Context, ids []string) ([]ProductUnits, error) {
	out := make([]ProductUnits, 0, len(ids))
	err := s.view(func(t *boltTx) error {
		inSales := map[string]map[string]int{} // stream → product → units in its sales
		for _, id := range ids {
			p, err := t.product(id)
			if errors.Is(err, ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			u := ProductUnits{Product: *p}
			if u.PutIn, u.PutInKnown, err = t.putIn(id); err != nil {
				return err
			}
			sums, ok := inSales[p.StreamID]
			if !ok {
				if sums, err = t.unitsInSales(p.StreamID); err != nil {
					return err
				}
				inSales[p.StreamID] = sums
			}
			u.InSales = sums[id]
			out = append(out, u)
		}
		return nil
	})
	return out, err
}

// unitsInSales sums Quantity − Returned of the stream's sales by product.
func (t *boltTx) unitsInSales(streamID string) (map[string]int, error) {
	sums := map[string]int{}
	for _, id := range indexValues(t.b(bucketStreamSales), streamID) {
		sale, err := t.sale(id)
		if err != nil {
			return nil, err
		}
		sums[sale.ProductID] += sale.Quantity - sale.Returned
	}
	return sums, nil
}

// GetSales reads the sales in one read transaction.
func (s *BoltStore) GetSales(ctx context.Context, ids []string) ([]Sale, error) {
	out := make([]Sale, 0, len(ids))
	err := s.view(func(t *boltTx) error {
		for _, id := range ids {
			sale, err := t.sale(id)
			if errors.Is(err, ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			out = append(out, *sale)
		}
		return nil
	})
	return out, err
}
