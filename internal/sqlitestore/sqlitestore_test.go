package sqlitestore_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	"github.com/calaimfhir/calaimfhir/internal/sqlitestore"
	"github.com/calaimfhir/calaimfhir/internal/storetest"
	"github.com/calaimfhir/calaimfhir/resources"
)

// Harness runs the conformance suite on SQLite files in temporary directories.
var Harness = storetest.Harness{
	Name: "sqlite",
	New:  func(t testing.TB) string { return t.TempDir() },
	Open: func(t testing.TB, dir string) resources.Store {
		s, err := sqlitestore.Open(context.Background(), dir, sqlitestore.Options{BusyTimeout: 300 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		return s
	},
	Outage: holdWriteLock,
}

// holdWriteLock simulates the embedded store's real outage: another process (a backup tool,
// a second server started by mistake on the same --data) holding the database's write lock.
// In WAL mode readers are not blocked by it, so reads may keep working; writes and the
// readiness probe fail as unavailable.
func holdWriteLock(t testing.TB, dir string) func() {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, sqlitestore.FileName)+"?_pragma=busy_timeout(5000)&_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	tx, err := db.Begin()
	if err != nil {
		t.Fatalf("take the write lock: %v", err)
	}
	return func() {
		tx.Rollback()
		db.Close()
	}
}

func TestConformance(t *testing.T) {
	storetest.Run(t, Harness)
}
