package cart

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// The default bounds of a stream's products and sales: far above a real event's
// (hundreds of products, dozens of sales).
const (
	DefaultMaxProducts = 1000
	DefaultMaxSales    = 500
)

// ServiceConfig tunes the commerce service. Zero values take the defaults.
type ServiceConfig struct {
	HoldTTL     time.Duration // product holds (default 10m)
	SaleHoldTTL time.Duration // sale holds (default 2m)
	MaxPins     int           // pinned products per stream (default 5)
	// MaxProducts and MaxSales bound a stream's products (hidden ones too) and sales
	// (ended ones too): every viewer's page lists the products, and every websocket
	// connect's snapshot carries all the sales (defaults 1000 and 500).
	MaxProducts   int
	MaxSales      int
	SweepInterval time.Duration // how often Run advances sales and sweeps holds (default 250ms)
	SweepBatch    int           // holds released per store call (default 500)
}

func (c ServiceConfig) withDefaults() ServiceConfig {
	if c.HoldTTL <= 0 {
		c.HoldTTL = 10 * time.Minute
	}
	if c.SaleHoldTTL <= 0 {
		c.SaleHoldTTL = 2 * time.Minute
	}
	if c.MaxPins <= 0 {
		c.MaxPins = 5
	}
	if c.MaxProducts <= 0 {
		c.MaxProducts = DefaultMaxProducts
	}
	if c.MaxSales <= 0 {
		c.MaxSales = DefaultMaxSales
	}
	if c.SweepInterval <= 0 {
		c.SweepInterval = 250 * time.Millisecond
	}
	if c.SweepBatch <= 0 {
		c.SweepBatch = 500
	}
	return c
}

// Actor is who performs an action, for the audit log.
type Actor struct {
	ID   string
	Role string
}

// Service is the commerce room's logic over a Store: it validates input (ErrBadRequest,
// ErrNotFound for ids that are not UUIDs), picks ids and TTLs, records audit entries and
// emits live events after every committed change. Roles and ownership are the HTTP
// layer's business (it checks them before calling).
type Service struct {
	store  Store
	events Emitter
	cfg    ServiceConfig
	now    func() time.Time
	log    *slog.Logger

	// The sweep's failures while the store is down, logged once per 10 s.
	advanceLog, releaseLog *OutageLog
	// recent: the sales and products changed lately (RecentUnits), fed by emit.
	recent recentUnits
}

// NewService returns a Service. events may be nil (no live channel); now nil means
// time.Now; log nil means slog.Default().
func NewService(store Store, events Emitter, cfg ServiceConfig, now func() time.Time, log *slog.Logger) *Service {
	if events == nil {
		events = EmitterFunc(func(context.Context, Event) {})
	}
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.Default()
	}
	return &Service{store: store, events: events, cfg: cfg.withDefaults(), now: now, log: log,
		advanceLog: NewOutageLog(log, "advance sales", 0, nil),
		releaseLog: NewOutageLog(log, "release expired holds", 0, nil)}
}

// Store returns the service's store.
func (s *Service) Store() Store { return s.store }

// Config returns the effective configuration (defaults filled in).
func (s *Service) Config() ServiceConfig { return s.cfg }

func badRequest(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadRequest, fmt.Sprintf(format, args...))
}

// ValidID reports whether id is a UUID in its canonical 36-character form.
func ValidID(id string) bool {
	if len(id) != 36 {
		return false
	}
	_, err := uuid.Parse(id)
	return err == nil
}

func checkID(what, id string) error {
	if !ValidID(id) {
		return fmt.Errorf("%w: no %s %q", ErrNotFound, what, id)
	}
	return nil
}

var currencyRE = regexp.MustCompile(`^[A-Z]{3}$`)

// checkText checks a text field: present if required, at most max characters, valid
// UTF-8, and no control characters (a NUL or an escape sequence in a title shows as
// garbage on every viewer's page); a multiline field may hold line breaks and tabs.
func checkText(field, v string, required bool, max int, multiline bool) error {
	switch {
	case required && strings.TrimSpace(v) == "":
		return badRequest("%s is required", field)
	case utf8.RuneCountInString(v) > max:
		return badRequest("%s is longer than %d characters", field, max)
	case !utf8.ValidString(v):
		return badRequest("%s is not valid UTF-8", field)
	case HasControl(v, multiline):
		return badRequest("%s must not contain control characters", field)
	}
	return nil
}

// HasControl reports whether s holds a control character (C0, DEL or C1); with
// multiline, line feeds, carriage returns and tabs are allowed.
func HasControl(s string, multiline bool) bool {
	for _, r := range s {
		if multiline && (r == '\n' || r == '\r' || r == '\t') {
			continue
		}
		if r < 0x20 || r >= 0x7f && r < 0xa0 {
			return true
		}
	}
	return false
}

func (s *Service) emit(ctx context.Context, streamID, typ string, data any) {
	s.recent.note(streamID, data, s.now())
	s.events.Emit(ctx, Event{StreamID: streamID, Type: typ, Data: data})
}

// emitStock sends the free units of every sale and product a call touched.
func (s *Service) emitStock(ctx context.Context, ch Changes) {
	for _, sale := range ch.Sales {
		s.emit(ctx, sale.StreamID, EventStock, StockData{SaleID: sale.ID, ProductID: sale.ProductID, Remaining: sale.Remaining})
	}
	for _, p := range ch.Products {
		s.emit(ctx, p.StreamID, EventStock, StockData{ProductID: p.ID, Remaining: p.Stock})
	}
}

func (s *Service) audit(ctx context.Context, a Actor, streamID, action, target string, details map[string]any) {
	if details == nil {
		details = map[string]any{}
	}
	e := AuditEntry{ID: newID(), StreamID: streamID, ActorID: a.ID, ActorRole: a.Role,
		Action: action, Target: target, Details: details, At: s.now().UTC()}
	if err := s.store.AppendAudit(ctx, e); err != nil {
		// The action itself is committed; a lost audit line is logged, not undone.
		s.log.Error("audit append failed", "action", action, "target", target, "err", err)
	}
}

// newID returns a new UUID. Version 7 (time-ordered) keeps the store's inserts of holds
// and orders near the end of their B-tree instead of scattered over it.
func newID() string { return uuid.Must(uuid.NewV7()).String() }
