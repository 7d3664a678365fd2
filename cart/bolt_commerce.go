package cart

import (
	"context"
	"errors"
	"time"
)

var errNotImplemented = errors.New("not implemented yet")

func (s *BoltStore) CreateProduct(ctx context.Context, p Product) (Product, error) {
	return Product{}, errNotImplemented
}
func (s *BoltStore) GetProduct(ctx context.Context, id string) (Product, error) {
	return Product{}, errNotImplemented
}
func (s *BoltStore) ListProducts(ctx context.Context, streamID string) ([]Product, error) {
	return nil, errNotImplemented
}
func (s *BoltStore) SetProductHidden(ctx context.Context, id string, hidden bool) (Product, bool, bool, error) {
	return Product{}, false, false, errNotImplemented
}
func (s *BoltStore) PinProduct(ctx context.Context, streamID, productID string, maxPins int) ([]Product, bool, error) {
	return nil, false, errNotImplemented
}
func (s *BoltStore) UnpinProduct(ctx context.Context, streamID, productID string) ([]Product, bool, error) {
	return nil, false, errNotImplemented
}
func (s *BoltStore) ListPinned(ctx context.Context, streamID string) ([]Product, error) {
	return nil, errNotImplemented
}
func (s *BoltStore) CreateSale(ctx context.Context, sale Sale, now time.Time) (Sale, Product, error) {
	return Sale{}, Product{}, errNotImplemented
}
func (s *BoltStore) GetSale(ctx context.Context, id string) (Sale, error) {
	return Sale{}, errNotImplemented
}
func (s *BoltStore) ListSales(ctx context.Context, streamID string) ([]Sale, error) {
	return nil, errNotImplemented
}
func (s *BoltStore) StopSale(ctx context.Context, id string, now time.Time) (Sale, Product, bool, error) {
	return Sale{}, Product{}, false, errNotImplemented
}
func (s *BoltStore) AdvanceSales(ctx context.Context, now time.Time) ([]SaleUpdate, error) {
	return nil, errNotImplemented
}
func (s *BoltStore) HoldUnits(ctx context.Context, req HoldRequest, now time.Time) (Hold, Changes, error) {
	return Hold{}, Changes{}, errNotImplemented
}
func (s *BoltStore) ListHolds(ctx context.Context, userID string, now time.Time) ([]Hold, error) {
	return nil, errNotImplemented
}
func (s *BoltStore) RemoveHold(ctx context.Context, userID, holdID string, now time.Time) (Changes, error) {
	return Changes{}, errNotImplemented
}
func (s *BoltStore) ReleaseExpiredHolds(ctx context.Context, now time.Time, max int) (int, Changes, error) {
	return 0, Changes{}, errNotImplemented
}
func (s *BoltStore) Checkout(ctx context.Context, req CheckoutRequest, now time.Time) (CheckoutResult, error) {
	return CheckoutResult{}, errNotImplemented
}
func (s *BoltStore) ListOrders(ctx context.Context, userID string) ([]Order, error) {
	return nil, errNotImplemented
}
func (s *BoltStore) ListStreamOrders(ctx context.Context, streamID string) ([]Order, error) {
	return nil, errNotImplemented
}
