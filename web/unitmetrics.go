package web

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/livecart/livecart/cart"
)

// Unit gauges: the store's numbers of the sales and products this node changed lately
// (cart.Service.RecentUnits), read at scrape time. Other nodes on the same Redis change
// them too, so the values are read, never counted here.
const (
	unitScrapeTimeout = 2 * time.Second // all the store reads of one scrape
	// endedSaleKept is how long an ended sale (or a product gone) stays in the gauges
	// after its last change here.
	endedSaleKept = 5 * time.Minute
)

var (
	saleUnitsDesc = prometheus.NewDesc("livecart_sale_units",
		"A flash sale's units by state (quantity = remaining + held + sold + returned), as the store has them.",
		[]string{"stream_id", "sale_id", "state"}, nil)
	saleInvariantDesc = prometheus.NewDesc("livecart_sale_invariant_ok",
		"1 when the sale's quantity = remaining + held + sold + returned in the store, else 0.",
		[]string{"stream_id", "sale_id"}, nil)
	productUnitsDesc = prometheus.NewDesc("livecart_product_units",
		"A product's units by state, as the store has them: its own (stock, held, sold: at its own price), in_sales (the sum over its sales of quantity - returned) and put_in (its stock at creation; absent for a product created before 2026-12-05); put_in = stock + held + sold + in_sales.",
		[]string{"stream_id", "product_id", "state"}, nil)
	productInvariantDesc = prometheus.NewDesc("livecart_product_invariant_ok",
		"1 when the product's units put in = stock + held + sold + the sum over its sales of (quantity - returned) in the store (the product and its sales read at one moment), else 0; absent when the store does not know its units put in (created before 2026-12-05).",
		[]string{"stream_id", "product_id"}, nil)
)

// unitCollector exports the unit gauges of one Service's recent sales and products.
type unitCollector struct {
	svc     *cart.Service
	timeout time.Duration
	outage  *cart.OutageLog // store reads failing, logged once a minute
}

func newUnitCollector(svc *cart.Service, log *slog.Logger) *unitCollector {
	return &unitCollector{svc: svc, timeout: unitScrapeTimeout,
		outage: cart.NewOutageLog(log, "metrics: read sale and product units", time.Minute, nil)}
}

func (c *unitCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- saleUnitsDesc
	ch <- saleInvariantDesc
	ch <- productUnitsDesc
	ch <- productInvariantDesc
}

// Collect reads every recent sale and product from the store within c.timeout (one
// batch read of the sales, one of the products with their sales). A read that fails
// ends the reads: the series not read yet are left out of this scrape, which never
// fails for it.
func (c *unitCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	sales, products := c.svc.RecentUnits()
	if err := c.collectSales(ctx, ch, sales); err != nil {
		c.outage.Fail(err)
		return
	}
	if err := c.collectProducts(ctx, ch, products); err != nil {
		c.outage.Fail(err)
		return
	}
	c.outage.OK()
}

func (c *unitCollector) collectSales(ctx context.Context, ch chan<- prometheus.Metric, recent []cart.Touched) error {
	if len(recent) == 0 {
		return nil
	}
	sales, err := c.svc.Store().GetSales(ctx, touchedIDs(recent))
	if err != nil {
		return err
	}
	found := make(map[string]cart.Sale, len(sales))
	for _, sale := range sales {
		found[sale.ID] = sale
	}
	old := c.svc.Now().Add(-endedSaleKept)
	for _, t := range recent {
		sale, ok := found[t.ID]
		if (!ok || sale.Status == cart.SaleEnded) && t.At.Before(old) {
			c.svc.ForgetSale(t.ID, t.At) // still shown this once, if there
		}
	}
	for _, sale := range sales {
		for _, v := range []unitState{{"quantity", sale.Quantity}, {"remaining", sale.Remaining}, {"held", sale.Held}, {"sold", sale.Sold}, {"returned", sale.Returned}} {
			ch <- prometheus.MustNewConstMetric(saleUnitsDesc, prometheus.GaugeValue, float64(v.n), sale.StreamID, sale.ID, v.state)
		}
		ok := sale.Quantity == sale.Remaining+sale.Held+sale.Sold+sale.Returned
		ch <- prometheus.MustNewConstMetric(saleInvariantDesc, prometheus.GaugeValue, bool01(ok), sale.StreamID, sale.ID)
	}
	return nil
}

// collectProducts exports each product's units and, when the store knows its units
// put in, its invariant, from one read of the product with its sales.
func (c *unitCollector) collectProducts(ctx context.Context, ch chan<- prometheus.Metric, recent []cart.Touched) error {
	if len(recent) == 0 {
		return nil
	}
	units, err := c.svc.Store().GetProductUnits(ctx, touchedIDs(recent))
	if err != nil {
		return err
	}
	found := make(map[string]bool, len(units))
	for _, u := range units {
		found[u.Product.ID] = true
	}
	old := c.svc.Now().Add(-endedSaleKept)
	for _, t := range recent {
		if !found[t.ID] && t.At.Before(old) {
			c.svc.ForgetProduct(t.ID, t.At)
		}
	}
	for _, u := range units {
		p := u.Product
		states := []unitState{{"stock", p.Stock}, {"held", p.Held}, {"sold", p.Sold}, {"in_sales", u.InSales}}
		if u.PutInKnown {
			states = append(states, unitState{"put_in", u.PutIn})
		}
		for _, v := range states {
			ch <- prometheus.MustNewConstMetric(productUnitsDesc, prometheus.GaugeValue, float64(v.n), p.StreamID, p.ID, v.state)
		}
		if ok, known := u.InvariantOK(); known {
			ch <- prometheus.MustNewConstMetric(productInvariantDesc, prometheus.GaugeValue, bool01(ok), p.StreamID, p.ID)
		}
	}
	return nil
}

// unitState is one series of a unit gauge: its state label and value.
type unitState struct {
	state string
	n     int
}

func touchedIDs(ts []cart.Touched) []string {
	ids := make([]string, len(ts))
	for i, t := range ts {
		ids[i] = t.ID
	}
	return ids
}

func bool01(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
