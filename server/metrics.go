package server

import (
	"context"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/calaimfhir/calaimfhir/resources"
)

// metrics are labelled by interaction, resource type, status and store operation only: no
// label can carry an id, a query or any other request data.
type metrics struct {
	requests  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	storeCall *prometheus.HistogramVec
	storeName string
}

func newMetrics(reg *prometheus.Registry, storeName string) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "calaimfhir_http_requests_total",
			Help: "HTTP requests by FHIR interaction, resource type and status code.",
		}, []string{"interaction", "type", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "calaimfhir_http_request_duration_seconds",
			Help:    "HTTP request latency by FHIR interaction and resource type.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"interaction", "type"}),
		storeCall: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "calaimfhir_store_call_duration_seconds",
			Help:    "Latency of store calls by store, operation and outcome.",
			Buckets: []float64{.0001, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5},
		}, []string{"store", "op", "outcome"}),
		storeName: storeName,
	}
	reg.MustRegister(m.requests, m.latency, m.storeCall)
	return m
}

func (m *metrics) observeRequest(interaction, typ string, status int, d time.Duration) {
	m.requests.WithLabelValues(interaction, typ, strconv.Itoa(status)).Inc()
	m.latency.WithLabelValues(interaction, typ).Observe(d.Seconds())
}

func (m *metrics) observeStore(op string, start time.Time, err error) {
	outcome := "ok"
	switch {
	case err == nil:
	case resources.IsKind(err, resources.KindUnavailable):
		outcome = "unavailable"
	case resources.KindOf(err) == resources.KindInternal:
		outcome = "error"
	default:
		outcome = "rejected" // not found, gone, conflict: the store answered
	}
	m.storeCall.WithLabelValues(m.storeName, op, outcome).Observe(time.Since(start).Seconds())
}

// timedStore measures every store call.
type timedStore struct {
	resources.Store
	m *metrics
}

func (t *timedStore) Read(ctx context.Context, typ, id string) (*resources.Resource, error) {
	start := time.Now()
	r, err := t.Store.Read(ctx, typ, id)
	t.m.observeStore("read", start, err)
	return r, err
}

func (t *timedStore) VRead(ctx context.Context, typ, id string, version int64) (*resources.Resource, error) {
	start := time.Now()
	r, err := t.Store.VRead(ctx, typ, id, version)
	t.m.observeStore("vread", start, err)
	return r, err
}

func (t *timedStore) Put(ctx context.Context, r *resources.Resource) error {
	leaveBulkSlot(ctx) // the commit is waited for without the slot (bulk.go)
	start := time.Now()
	err := t.Store.Put(ctx, r)
	t.m.observeStore("put", start, err)
	if err == nil {
		noteWritten(ctx, r)
	}
	return err
}

// SetKeys is timed as set_keys: the plans' member keys changed in place (resources/membership.go).
func (t *timedStore) SetKeys(ctx context.Context, typ, id string, version int64, prefix string, keys []string) error {
	start := time.Now()
	err := t.Store.SetKeys(ctx, typ, id, version, prefix, keys)
	t.m.observeStore("set_keys", start, err)
	return err
}

// CreateFresh passes resources.FreshCreator through, when the store has it, and is Put
// otherwise; timed as a put.
func (t *timedStore) CreateFresh(ctx context.Context, r *resources.Resource) error {
	leaveBulkSlot(ctx) // the commit is waited for without the slot (bulk.go)
	fc, ok := t.Store.(resources.FreshCreator)
	if !ok {
		return t.Put(ctx, r)
	}
	start := time.Now()
	err := fc.CreateFresh(ctx, r)
	t.m.observeStore("put", start, err)
	if err == nil {
		noteWritten(ctx, r)
	}
	return err
}

func (t *timedStore) CreateIfNoneExist(ctx context.Context, r *resources.Resource, cond *resources.Query) (*resources.Resource, error) {
	leaveBulkSlot(ctx) // the commit is waited for without the slot (bulk.go)
	start := time.Now()
	existing, err := t.Store.CreateIfNoneExist(ctx, r, cond)
	t.m.observeStore("create_if_none_exist", start, err)
	if err == nil && existing == nil {
		noteWritten(ctx, r)
	}
	return existing, err
}

func (t *timedStore) Search(ctx context.Context, q *resources.Query) (*resources.Page, error) {
	start := time.Now()
	p, err := t.Store.Search(ctx, q)
	t.m.observeStore("search", start, err)
	return p, err
}

func (t *timedStore) History(ctx context.Context, q *resources.HistoryQuery) (*resources.Page, error) {
	start := time.Now()
	p, err := t.Store.History(ctx, q)
	t.m.observeStore("history", start, err)
	return p, err
}

// ExternalChangeStamp passes resources.ChangeStamper through, when the store has it.
func (t *timedStore) ExternalChangeStamp(ctx context.Context) (uint64, error) {
	cs, ok := t.Store.(resources.ChangeStamper)
	if !ok {
		return 0, resources.Errorf(resources.KindInternal, "the store cannot tell whether another process wrote")
	}
	return cs.ExternalChangeStamp(ctx)
}

// TypeClock passes resources.TypeClock through, when the store has it.
func (t *timedStore) TypeClock(typ string) (uint64, bool) {
	if tc, ok := t.Store.(resources.TypeClock); ok {
		return tc.TypeClock(typ)
	}
	return 0, false
}

func (t *timedStore) Ping(ctx context.Context) error {
	start := time.Now()
	err := t.Store.Ping(ctx)
	t.m.observeStore("ping", start, err)
	return err
}

// Apply passes transactions through to stores that support them, timed like the rest.
func (t *timedStore) Apply(ctx context.Context, writes []*resources.Write) error {
	leaveBulkSlot(ctx) // the commit is waited for without the slot (bulk.go)
	tx, ok := t.Store.(resources.Transactor)
	if !ok {
		return resources.Errorf(resources.KindMethodNotAllowed, "this store cannot write several resources atomically")
	}
	start := time.Now()
	err := tx.Apply(ctx, writes)
	t.m.observeStore("apply", start, err)
	for i := 0; err == nil && i < len(writes); i++ {
		noteWritten(ctx, writes[i].Resource)
	}
	return err
}
