package cart

import "context"

// Event types the live channel fans out. Data of each is documented beside it.
const (
	EventPin     = "pin"     // PinData
	EventUnpin   = "unpin"   // UnpinData
	EventProduct = "product" // ProductData
	EventSale    = "sale"    // SaleData
	EventStock   = "stock"   // StockData
)

// Event is one change of a stream's state that every viewer must see. Data marshals to
// a JSON object whose fields are put beside "type", "seq" and "ts" in the frame.
type Event struct {
	StreamID string
	Type     string
	Data     any
}

// Emitter receives the domain events after the store has committed the change. Values
// inside an event are the store's values after the change. Emit must not block on
// slow consumers.
type Emitter interface {
	Emit(ctx context.Context, ev Event)
}

// EmitterFunc adapts a function to Emitter.
type EmitterFunc func(ctx context.Context, ev Event)

// Emit calls f.
func (f EmitterFunc) Emit(ctx context.Context, ev Event) { f(ctx, ev) }

// PinData is the payload of a pin event.
type PinData struct {
	Product Product `json:"product"`
}

// UnpinData is the payload of an unpin event.
type UnpinData struct {
	ProductID string `json:"product_id"`
}

// ProductData is the payload of a product event (created, changed, hidden, stock).
// Toggled marks the event of a hide or an unhide (SetHidden): the one event of a
// hidden product its viewers get; the live hub drops the others while it is hidden.
type ProductData struct {
	Product Product `json:"product"`
	Toggled bool    `json:"-"`
}

// SaleData is the payload of a sale event (created, started, stopped, ended).
type SaleData struct {
	Sale Sale `json:"sale"`
}

// StockData is the payload of a stock event: the free units after a change of a sale
// (SaleID set, Remaining = the sale's remaining) or of a product's own stock (SaleID
// empty, Remaining = the product's stock). Coalesce per SaleID, or per ProductID when
// SaleID is empty.
type StockData struct {
	SaleID    string `json:"sale_id,omitempty"`
	ProductID string `json:"product_id"`
	Remaining int    `json:"remaining"`
}

// EventStream is a stream status change; Data is StreamData.
const EventStream = "stream"

// StreamData is the payload of a stream event. Stream is the HTTP view of the stream;
// Ended tells the live hub to close the stream's connections after delivering it.
type StreamData struct {
	Stream any  `json:"stream"`
	Ended  bool `json:"-"`
}
