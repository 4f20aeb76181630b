package mongostore_test

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/calaimfhir/calaimfhir/internal/fhirtest"
	"github.com/calaimfhir/calaimfhir/internal/mongostore"
	"github.com/calaimfhir/calaimfhir/internal/storetest"
	"github.com/calaimfhir/calaimfhir/resources"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, fhirtest.MongoDB)
}

// TestConformance_External runs the suite against an external server named by
// CALAIMFHIR_TEST_MONGODB_URI, e.g. FerretDB on PostgreSQL from scripts/ferretdb-pg.sh
// (mongodb://127.0.0.1:27019/), whose query planner differs from the in-process FerretDB's
// SQLite backend. Each test gets its own database, dropped afterwards; the outage test is
// skipped (the server is not this process's to stop).
func TestConformance_External(t *testing.T) {
	base := os.Getenv("CALAIMFHIR_TEST_MONGODB_URI")
	if base == "" {
		t.Skip("CALAIMFHIR_TEST_MONGODB_URI is not set")
	}
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("CALAIMFHIR_TEST_MONGODB_URI: %v", err)
	}
	client, err := mongo.Connect(options.Client().ApplyURI(base))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Disconnect(context.Background()) })
	run := time.Now().UnixNano() % 1e9
	var seq atomic.Int64
	storetest.Run(t, storetest.Harness{
		Name: "mongodb-external",
		New: func(t testing.TB) string {
			db := fmt.Sprintf("conf%d_%d", run, seq.Add(1))
			t.Cleanup(func() { client.Database(db).Drop(context.Background()) })
			loc := *u
			loc.Path = "/" + db
			return loc.String()
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
		Outage: func(t testing.TB, loc string) func() {
			t.Skip("an external server is not stopped by the tests")
			return nil
		},
	})
}
