package server

import (
	"context"
	"runtime"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/calaimfhir/calaimfhir/resources"
)

// Bulk requests (transaction and batch Bundles, Claim/$submit, $import, $export-837p) each
// parse and validate up to hundreds of resources: tens to hundreds of milliseconds of CPU
// apiece. Run several at once and they fill the CPUs' run queues, and every short request
// (a read, a CBO's poll) waits in line behind them: in a write-heavy mix on two cores, polls
// taking 1.6 ms alone took 7 ms at the median and 67-84 ms at p99 (docs/benchmarks.md). So
// a bulk request takes a slot once its body has arrived, and only a few of them
// (Config.BulkConcurrency) prepare their writes at a time; the others wait, using no CPU,
// for up to Config.BulkWait, and are then refused with 503 and Retry-After (nothing was
// written; the client should retry). Short requests never wait for a slot.

// defaultBulkWait is how long a bulk request waits for a slot by default.
const defaultBulkWait = 30 * time.Second

// bulkGate bounds the bulk requests running at once.
type bulkGate struct {
	slots chan struct{}
	wait  time.Duration
}

// newBulkGate returns a gate with n slots (n == 0: half the CPUs, at least one; n < 0: no
// limit, nil) and the given wait (0: defaultBulkWait).
func newBulkGate(n int, wait time.Duration) *bulkGate {
	if n < 0 {
		return nil
	}
	if n == 0 {
		n = max(1, runtime.GOMAXPROCS(0)/2)
	}
	if wait <= 0 {
		wait = defaultBulkWait
	}
	return &bulkGate{slots: make(chan struct{}, n), wait: wait}
}

// enter takes a slot, waiting up to g.wait (or until ctx ends). The returned function gives
// the slot back.
func (g *bulkGate) enter(ctx context.Context) (func(), error) {
	select {
	case g.slots <- struct{}{}:
		return func() { <-g.slots }, nil
	default:
	}
	t := time.NewTimer(g.wait)
	defer t.Stop()
	select {
	case g.slots <- struct{}{}:
		return func() { <-g.slots }, nil
	case <-t.C:
		secs := max(1, int(g.wait/time.Second/2))
		return nil, &resources.Error{Kind: resources.KindUnavailable, RetryAfter: secs,
			Message: "the server is busy with other bulk requests (Bundles, $submit, $import, $export-837p); nothing was written; retry later"}
	case <-ctx.Done():
		return nil, resources.Errorf(resources.KindUnavailable, "the request ended while waiting for other bulk requests")
	}
}

// bulkTurnKey carries a bulk request's turn in its context.
type bulkTurnKey struct{}

// bulkTurn is one bulk request's use of the gate: it takes a slot once its body has arrived
// (readBody calls enterBulkSlot), so that a slow upload holds none, and gives it back at its
// first store write (timedStore calls leaveBulkSlot): the slot bounds the parsing,
// validation and checks, not the wait for the commit, so that the writes of several bulk
// requests still share commits (holding it to the end halved the referral Bundles per second).
type bulkTurn struct {
	g    *bulkGate
	mu   sync.Mutex
	held func() // the slot's release while one is held
}

func (t *bulkTurn) enter(ctx context.Context) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.held != nil {
		return nil
	}
	leave, err := t.g.enter(ctx)
	if err != nil {
		return err
	}
	t.held = leave
	return nil
}

func (t *bulkTurn) leave() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.held != nil {
		t.held()
		t.held = nil
	}
}

// bulk is the middleware of the bulk routes: it gives the request a turn, which its body
// read and first write use.
func (s *Server) bulk(next echo.HandlerFunc) echo.HandlerFunc {
	if s.bulkGate == nil {
		return next
	}
	return func(c echo.Context) error {
		req := c.Request()
		turn := &bulkTurn{g: s.bulkGate}
		defer turn.leave()
		c.SetRequest(req.WithContext(context.WithValue(req.Context(), bulkTurnKey{}, turn)))
		return next(c)
	}
}

// enterBulkSlot waits for a slot if ctx's request is a bulk one (see bulkTurn).
func enterBulkSlot(ctx context.Context) error {
	if t, ok := ctx.Value(bulkTurnKey{}).(*bulkTurn); ok {
		return t.enter(ctx)
	}
	return nil
}

// leaveBulkSlot gives back the slot of ctx's request, if it holds one.
func leaveBulkSlot(ctx context.Context) {
	if t, ok := ctx.Value(bulkTurnKey{}).(*bulkTurn); ok {
		t.leave()
	}
}
