package fhirtest

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

// SQLite is the embedded store's test harness: files in a temporary directory.
var SQLite = storetest.Harness{
	Name: "sqlite",
	New:  func(t testing.TB) string { return t.TempDir() },
	Open: func(t testing.TB, dir string) resources.Store {
		t.Helper()
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

// Stores lists the harnesses of every store, for tests that must pass on each.
func Stores() []storetest.Harness {
	return []storetest.Harness{SQLite, MongoDB}
}

// ForEachStore runs fn as a subtest per store.
func ForEachStore(t *testing.T, fn func(t *testing.T, h storetest.Harness)) {
	for _, h := range Stores() {
		t.Run(h.Name, func(t *testing.T) { fn(t, h) })
	}
}
