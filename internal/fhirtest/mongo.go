package fhirtest

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/calaimfhir/calaimfhir/internal/ferrettest"
	"github.com/calaimfhir/calaimfhir/internal/mongostore"
	"github.com/calaimfhir/calaimfhir/internal/storetest"
	"github.com/calaimfhir/calaimfhir/resources"
)

// servers maps each store location (a MongoDB URI) to the FerretDB serving it. Every location
// gets its own FerretDB (starting one takes milliseconds), so an outage of one test's server
// cannot disturb another test.
var servers sync.Map

var dbSeq atomic.Int64

// MongoDB is the MongoDB store's test harness: the real driver against FerretDB started
// in-process (no MongoDB server can be installed on the development machines).
var MongoDB = storetest.Harness{
	Name: "mongodb",
	New: func(t testing.TB) string {
		t.Helper()
		srv := ferrettest.Start(t)
		loc := srv.URI(fmt.Sprintf("calaimfhir%d", dbSeq.Add(1)))
		servers.Store(loc, srv)
		t.Cleanup(func() { servers.Delete(loc) })
		return loc
	},
	Open: func(t testing.TB, loc string) resources.Store {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		s, err := mongostore.Open(ctx, loc, mongostore.Options{})
		if err != nil {
			t.Fatalf("mongostore.Open: %v", err)
		}
		return s
	},
	// Outage stops the FerretDB serving the location; restore starts it again on the same
	// port and data directory.
	Outage: func(t testing.TB, loc string) func() {
		t.Helper()
		v, ok := servers.Load(loc)
		if !ok {
			t.Fatalf("no FerretDB for %s", loc)
		}
		srv := v.(*ferrettest.Server)
		srv.Stop()
		return func() {
			if err := srv.Start(); err != nil {
				t.Errorf("restart FerretDB: %v", err)
			}
		}
	},
}
