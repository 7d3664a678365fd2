package cart

import (
	"slices"
	"strconv"
	"strings"
	"time"
)

// The Redis store keeps every record as a hash of strings; these turn them into the
// domain types. Times are stored as RFC 3339 strings (exact) and, where scripts
// compare them, also as µs since the epoch.

func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func formatTimePtr(t *time.Time) string {
	if t == nil {
		return ""
	}
	return formatTime(*t)
}

func micros(t time.Time) string { return strconv.FormatInt(t.UnixMicro(), 10) }

func parseTime(s string) time.Time {
	t, _ := time.Parse(time.RFC3339Nano, s)
	return t
}

func parseTimePtr(s string) *time.Time {
	if s == "" {
		return nil
	}
	t := parseTime(s)
	return &t
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

func atoi64(s string) int64 {
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}

func flag(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// splitList splits a joined list; "" is the empty list.
func splitList(s, sep string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, sep)
}

func streamFromHash(m map[string]string) Stream {
	return Stream{
		ID:        m["id"],
		Title:     m["title"],
		CreatorID: m["creator_id"],
		Status:    StreamStatus(m["status"]),
		StreamKey: m["stream_key"],
		CreatedAt: parseTime(m["created_at"]),
		StartedAt: parseTimePtr(m["started_at"]),
		EndedAt:   parseTimePtr(m["ended_at"]),
	}
}

func productHash(p Product) []any {
	return []any{
		"id", p.ID, "stream_id", p.StreamID, "sku", p.SKU, "title", p.Title,
		"description", p.Description, "price_cents", strconv.FormatInt(p.PriceCents, 10),
		"currency", p.Currency, "image_url", p.ImageURL, "stock", strconv.Itoa(p.Stock),
	}
}

func productFromHash(m map[string]string) Product {
	return Product{
		ID:          m["id"],
		StreamID:    m["stream_id"],
		SKU:         m["sku"],
		Title:       m["title"],
		Description: m["description"],
		PriceCents:  atoi64(m["price_cents"]),
		Currency:    m["currency"],
		ImageURL:    m["image_url"],
		Stock:       atoi(m["stock"]),
		Held:        atoi(m["held"]),
		Sold:        atoi(m["sold"]),
		Hidden:      m["hidden"] == "1",
	}
}

func saleHash(s Sale) []any {
	return []any{
		"id", s.ID, "stream_id", s.StreamID, "product_id", s.ProductID,
		"price_cents", strconv.FormatInt(s.PriceCents, 10), "quantity", strconv.Itoa(s.Quantity),
		"per_user_limit", strconv.Itoa(s.PerUserLimit),
		"starts_at", formatTime(s.StartsAt), "ends_at", formatTime(s.EndsAt),
		"starts_us", micros(s.StartsAt), "ends_us", micros(s.EndsAt),
	}
}

func saleFromHash(m map[string]string) Sale {
	return Sale{
		ID:           m["id"],
		StreamID:     m["stream_id"],
		ProductID:    m["product_id"],
		PriceCents:   atoi64(m["price_cents"]),
		Quantity:     atoi(m["quantity"]),
		Remaining:    atoi(m["remaining"]),
		Held:         atoi(m["held"]),
		Sold:         atoi(m["sold"]),
		Returned:     atoi(m["returned"]),
		PerUserLimit: atoi(m["per_user_limit"]),
		StartsAt:     parseTime(m["starts_at"]),
		EndsAt:       parseTime(m["ends_at"]),
		Status:       m["status"],
	}
}

// expandHold turns a hold record's packed field d (see hold_record in lua/lib.lua)
// into its fields; a record of the older form (a field each) stays as it is. The newer
// d (its first field the order item "product,sale,quantity,price", since 2026-12-06)
// leaves out its user (the reader puts it in m) and expires_at (see holdFromHash).
func expandHold(m map[string]string) {
	d, ok := m["d"]
	if !ok {
		return
	}
	delete(m, "d")
	if item, rest, ok := strings.Cut(d, "|"); ok && strings.IndexByte(item, ',') >= 0 {
		it := strings.SplitN(item, ",", 4)
		f := strings.SplitN(rest, "|", 4)
		if len(it) != 4 || len(f) != 4 {
			return
		}
		m["product_id"], m["sale_id"], m["quantity"], m["unit_price_cents"] = it[0], it[1], it[2], it[3]
		m["currency"], m["exp_us"], m["created_us"], m["seq"] = f[0], f[1], f[2], f[3]
		return
	}
	f := strings.SplitN(d, "|", 10)
	if len(f) != 10 {
		return
	}
	m["product_id"], m["sale_id"], m["quantity"], m["unit_price_cents"], m["currency"] = f[0], f[1], f[2], f[3], f[4]
	m["expires_at"], m["exp_us"], m["created_us"], m["seq"], m["user_id"] = f[5], f[6], f[7], f[8], f[9]
}

// expandOrder turns an order record's packed field d (see place_order in
// lua/checkout.lua) into its fields; a record of the older form (a field each) stays
// as it is. The newer d ("|" first, since 2026-12-06) leaves out what its place says:
// the reader puts the order's id, stream and user in m (d names the user only in an
// o:<oid> record); created_at is created_us's.
func expandOrder(m map[string]string) {
	d, ok := m["d"]
	if !ok {
		return
	}
	delete(m, "d")
	if rest, ok := strings.CutPrefix(d, "|"); ok {
		f := strings.SplitN(rest, "|", 7)
		if len(f) < 6 {
			return
		}
		m["total_cents"], m["currency"], m["created_us"], m["seq"], m["items"], m["expired"] = f[0], f[1], f[2], f[3], f[4], f[5]
		if _, ok := m["status"]; !ok { // a later status change is a field of its own
			m["status"] = "placed"
		}
		m["created_at"] = formatTime(time.UnixMicro(atoi64(f[2])))
		if len(f) == 7 {
			m["user_id"] = f[6]
		}
		return
	}
	f := strings.SplitN(d, "|", 11)
	if len(f) != 11 {
		return
	}
	m["id"], m["stream_id"], m["total_cents"], m["currency"] = f[0], f[1], f[2], f[3]
	if _, ok := m["status"]; !ok { // a later status change is a field of its own
		m["status"] = f[4]
	}
	m["created_at"], m["created_us"], m["seq"], m["items"], m["expired"], m["user_id"] = f[5], f[6], f[7], f[8], f[9], f[10]
}

// holdFromHash decodes a hold; it is expired when released (state "expired") or due
// at now. A hold's id and stream are its key's (see lua/hold.lua); the caller puts
// them in m.
func holdFromHash(m map[string]string, now time.Time) Hold {
	expandHold(m)
	return Hold{
		ID:             m["id"],
		UserID:         m["user_id"],
		StreamID:       m["stream_id"],
		ProductID:      m["product_id"],
		SaleID:         m["sale_id"],
		Quantity:       atoi(m["quantity"]),
		UnitPriceCents: atoi64(m["unit_price_cents"]),
		Currency:       m["currency"],
		ExpiresAt:      holdExpiry(m),
		Expired:        m["state"] == "expired" || atoi64(m["exp_us"]) <= now.UnixMicro(),
	}
}

// holdExpiry is a hold's expires_at: its record's, else (the newer record, or an older
// cart's hold made since 2026-12-06, see lua/lib.lua) its expires_us's, to the µs.
func holdExpiry(m map[string]string) time.Time {
	if at := m["expires_at"]; at != "" {
		return parseTime(at)
	}
	return time.UnixMicro(atoi64(m["exp_us"])).UTC()
}

// orderFromHash decodes an order; items are "product,sale,quantity,price;…".
func orderFromHash(m map[string]string) Order {
	expandOrder(m)
	o := Order{
		ID:             m["id"],
		UserID:         m["user_id"],
		StreamID:       m["stream_id"],
		Items:          []OrderItem{},
		TotalCents:     atoi64(m["total_cents"]),
		Currency:       m["currency"],
		Status:         m["status"],
		CreatedAt:      parseTime(m["created_at"]),
		ExpiredHoldIDs: []string{},
	}
	o.Items = orderItems(o.Items, m["items"])
	o.ExpiredHoldIDs = append(o.ExpiredHoldIDs, splitList(m["expired"], ",")...)
	return o
}

// orderOf is the order a script answered (a batch item's decoded one, else its record).
func (r *scriptReply) orderOf() Order {
	if r.hasOrder {
		return r.order
	}
	return orderFromHash(r.Order)
}

// orderItems appends the items of a record's "product,sale,quantity,price;…" to out.
func orderItems(out []OrderItem, items string) []OrderItem {
	for items != "" {
		item, rest, _ := strings.Cut(items, ";")
		items = rest
		pid, r, ok1 := strings.Cut(item, ",")
		said, r, ok2 := strings.Cut(r, ",")
		qty, price, ok3 := strings.Cut(r, ",")
		if !ok1 || !ok2 || !ok3 || strings.IndexByte(price, ',') >= 0 {
			continue
		}
		out = append(out, OrderItem{ProductID: pid, SaleID: said, Quantity: atoi(qty), UnitPriceCents: atoi64(price)})
	}
	return out
}

// changesOf lists the products and sales a script touched, in a stable order.
func changesOf(r *scriptReply) Changes {
	if r.batched {
		return r.changes
	}
	ch := Changes{}
	for _, m := range r.Products {
		ch.Products = append(ch.Products, productFromHash(m))
	}
	for _, m := range r.Sales {
		ch.Sales = append(ch.Sales, saleFromHash(m))
	}
	sortChanges(&ch)
	return ch
}

func sortChanges(ch *Changes) {
	slices.SortFunc(ch.Products, func(a, b Product) int { return strings.Compare(a.ID, b.ID) })
	slices.SortFunc(ch.Sales, func(a, b Sale) int { return strings.Compare(a.ID, b.ID) })
}
