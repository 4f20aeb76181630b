package server

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/calaimfhir/calaimfhir/internal/auth"
	"github.com/calaimfhir/calaimfhir/internal/r4"
	"github.com/calaimfhir/calaimfhir/internal/sqlitestore"
	"github.com/calaimfhir/calaimfhir/resources"
)

func openSQLite(t *testing.T) *sqlitestore.Store {
	t.Helper()
	st, err := sqlitestore.Open(context.Background(), t.TempDir(), sqlitestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// TestBulkGate_RefusesWhenBusy: with the one bulk slot taken, a transaction Bundle waits for
// BulkWait and is refused with 503, Retry-After and an OperationOutcome, having written
// nothing, while a search is answered at once; with the slot free it goes through.
func TestBulkGate_RefusesWhenBusy(t *testing.T) {
	store := openSQLite(t)
	key, err := auth.LoadOrCreateDevKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := key.Verifier()
	if err != nil {
		t.Fatal(err)
	}
	token, err := key.Mint(auth.MintOptions{Role: "admin", Org: "Organization/test"})
	if err != nil {
		t.Fatal(err)
	}
	s := New(Config{BaseURL: "http://example.test/fhir", Verifier: verifier, BulkConcurrency: 1, BulkWait: 100 * time.Millisecond},
		store, r4.Validate, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	defer s.Close()
	do := func(method, path, body string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		if body != "" {
			req.Header.Set("Content-Type", "application/fhir+json")
		}
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		return rec
	}
	bundle := `{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:p","request":{"method":"POST","url":"Patient"},` +
		`"resource":{"resourceType":"Patient","name":[{"family":"Waiter"}]}}]}`
	patients := func() int {
		page, err := store.Search(context.Background(), &resources.Query{Type: "Patient", Count: 10})
		if err != nil {
			t.Fatal(err)
		}
		return len(page.Resources)
	}

	leave, err := s.bulkGate.enter(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	rec := do("POST", "/fhir", bundle)
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" || time.Since(start) < 100*time.Millisecond {
		t.Fatalf("with the slot taken: %d after %v, Retry-After %q: %s", rec.Code, time.Since(start), rec.Header().Get("Retry-After"), rec.Body)
	}
	var oo struct{ ResourceType string }
	if json.Unmarshal(rec.Body.Bytes(), &oo) != nil || oo.ResourceType != "OperationOutcome" {
		t.Fatalf("refusal body: %s", rec.Body)
	}
	if n := patients(); n != 0 {
		t.Fatalf("a refused Bundle wrote %d Patients", n)
	}
	if rec := do("GET", "/fhir/Patient", ""); rec.Code != http.StatusOK {
		t.Fatalf("a search while the slot is taken: %d %s", rec.Code, rec.Body)
	}
	leave()
	if rec := do("POST", "/fhir", bundle); rec.Code != http.StatusOK {
		t.Fatalf("with the slot free: %d %s", rec.Code, rec.Body)
	}
	if n := patients(); n != 1 {
		t.Fatalf("Patients: %d, want 1", n)
	}
}

// TestBulkSlot_TakenWithTheBodyLeftAtTheFirstWrite: a bulk request's turn takes the slot when
// its body has been read and gives it back at its first store write (every write method of
// the timed store does), so the slot bounds its preparation, not its upload or its commit.
func TestBulkSlot_TakenWithTheBodyLeftAtTheFirstWrite(t *testing.T) {
	st := openSQLite(t)
	timed := &timedStore{Store: st, m: newMetrics(prometheus.NewRegistry(), "test")}
	g := newBulkGate(1, 20*time.Millisecond)
	n := 0
	patient := func() *resources.Resource {
		n++
		doc := map[string]any{"resourceType": "Patient", "id": resources.NewID()}
		r := &resources.Resource{Type: "Patient", ID: doc["id"].(string), VersionID: 1, LastUpdated: time.Now().UTC().Add(time.Duration(n) * time.Microsecond).Truncate(time.Microsecond)}
		r.JSON, _ = resources.EncodeResource(doc)
		r.Keys = resources.ExtractKeys("Patient", doc)
		return r
	}
	writes := map[string]func(ctx context.Context) error{
		"Put":         func(ctx context.Context) error { return timed.Put(ctx, patient()) },
		"CreateFresh": func(ctx context.Context) error { return timed.CreateFresh(ctx, patient()) },
		"CreateIfNoneExist": func(ctx context.Context) error {
			_, err := timed.CreateIfNoneExist(ctx, patient(), &resources.Query{Type: "Patient", Clauses: []resources.Clause{{AnyKey: []string{"_id=none"}}}})
			return err
		},
		"Apply": func(ctx context.Context) error { return timed.Apply(ctx, []*resources.Write{{Resource: patient()}}) },
	}
	s := &Server{cfg: Config{MaxBodyBytes: 1 << 20}}
	for name, write := range writes {
		turn := &bulkTurn{g: g}
		ctx := context.WithValue(context.Background(), bulkTurnKey{}, turn)
		// Before the body is read the slot is free; reading it takes the slot.
		if leave, err := g.enter(context.Background()); err != nil {
			t.Fatalf("%s: the slot was taken before the body was read: %v", name, err)
		} else {
			leave()
		}
		req := httptest.NewRequest("POST", "/fhir", bytes.NewReader([]byte(`{}`))).WithContext(ctx)
		c := echo.New().NewContext(req, httptest.NewRecorder())
		if _, err := s.readBody(c); err != nil {
			t.Fatal(err)
		}
		if _, err := g.enter(context.Background()); !resources.IsKind(err, resources.KindUnavailable) {
			t.Fatalf("%s: the slot was free after the body was read: %v", name, err)
		}
		if err := write(ctx); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		again, err := g.enter(context.Background())
		if err != nil {
			t.Fatalf("%s did not give the slot back: %v", name, err)
		}
		again()
		turn.leave() // as the middleware does at the end: a no-op now
	}
}
