package web

import (
	"context"
	"errors"
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
		"A product's own units (at its own price) by state, as the store has them.",
		[]string{"stream_id", "product_id", "state"}, nil)
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
}

// Collect reads every recent sale and product from the store within c.timeout. A read
// that fails (other than not found) ends the reads: the series not read yet are left
// out of this scrape, which never fails for it.
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

func (c *unitCollector) collectSales(ctx context.Context, ch chan<- prometheus.Metric, sales []cart.Touched) error {
	store, old := c.svc.Store(), c.svc.Now().Add(-endedSaleKept)
	for _, t := range sales {
		sale, err := store.GetSale(ctx, t.ID)
		gone := errors.Is(err, cart.ErrNotFound)
		if err != nil && !gone {
			return err
		}
		if (gone || sale.Status == cart.SaleEnded) && t.At.Before(old) {
			c.svc.ForgetSale(t.ID, t.At) // still shown this once, if there
		}
		if gone {
			continue
		}
		for _, v := range []struct {
			state string
			n     int
		}{{"quantity", sale.Quantity}, {"remaining", sale.Remaining}, {"held", sale.Held}, {"sold", sale.Sold}, {"returned", sale.Returned}} {
			ch <- prometheus.MustNewConstMetric(saleUnitsDesc, prometheus.GaugeValue, float64(v.n), sale.StreamID, sale.ID, v.state)
		}
		ok := 0.0
		if sale.Quantity == sale.Remaining+sale.Held+sale.Sold+sale.Returned {
			ok = 1
		}
		ch <- prometheus.MustNewConstMetric(saleInvariantDesc, prometheus.GaugeValue, ok, sale.StreamID, sale.ID)
	}
	return nil
}

func (c *unitCollector) collectProducts(ctx context.Context, ch chan<- prometheus.Metric, products []cart.Touched) error {
	store, old := c.svc.Store(), c.svc.Now().Add(-endedSaleKept)
	for _, t := range products {
		p, err := store.GetProduct(ctx, t.ID)
		if errors.Is(err, cart.ErrNotFound) {
			if t.At.Before(old) {
				c.svc.ForgetProduct(t.ID, t.At)
			}
			continue
		}
		if err != nil {
			return err
		}
		for _, v := range []struct {
			state string
			n     int
		}{{"stock", p.Stock}, {"held", p.Held}, {"sold", p.Sold}} {
			ch <- prometheus.MustNewConstMetric(productUnitsDesc, prometheus.GaugeValue, float64(v.n), p.StreamID, p.ID, v.state)
		}
	}
	return nil
}
