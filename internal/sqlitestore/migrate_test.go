package sqlitestore

import (
	"context"
	"database/sql"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/calaimfhir/calaimfhir/resources"
)

// TestMigrateEqKeys opens a database in the layout from before resources.eq_keys (the column
// absent, search_keys indexed on (type, id), unindexed keys among its rows) and checks that the
// store migrates it: the keys of existing resources are filled in, the index is gone, the
// unindexed keys' rows too, and updating or deleting such a resource removes its old keys.
func TestMigrateEqKeys(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(ctx, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []struct {
		id    string
		owner string
	}{{"a", "org-a"}, {"b", "org-b"}, {"c", "org-c"}} {
		if err := s.Put(ctx, testTask(r.id, 1, r.owner, r.id)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Put(ctx, testTask("b", 2, "org-b2", "b")); err != nil {
		t.Fatal(err)
	}
	s.Close()

	// Back to the old layout: no eq_keys, search_keys indexed on (type, id), and a row for each
	// unindexed key too (user_version 0).
	all := testTask("x", 1, "org-x", "x").Keys.Eq
	var unindexed []string
	for _, k := range all {
		if resources.Unindexed(k) {
			unindexed = append(unindexed, k)
		}
	}
	if !slices.ContainsFunc(unindexed, resources.IsPresentKey) || slices.IndexFunc(unindexed, func(k string) bool { return !resources.IsPresentKey(k) }) < 0 {
		t.Fatalf("the test Task's unindexed keys are not of both kinds: %q", unindexed)
	}
	db := oldLayout(t, dir,
		`ALTER TABLE resources DROP COLUMN eq_keys`,
		`CREATE INDEX search_keys_resource ON search_keys (type, id)`,
		`PRAGMA user_version = 0`)
	for _, k := range unindexed {
		if _, err := db.Exec(`INSERT INTO search_keys (type, key, lu, id) SELECT type, ?, lu, id FROM resources WHERE deleted = 0`, k); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()

	s = reopenGone(t, dir, "search_keys_resource")
	keyRows := func(id string) int {
		t.Helper()
		var n int
		if err := s.r.QueryRow(`SELECT count(*) FROM search_keys WHERE type = 'Task' AND id = ?`, id).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	// eq_keys holds every key; search_keys no longer has rows for unindexed keys.
	want := len(all) - len(unindexed)
	for _, id := range []string{"a", "b", "c"} {
		var stored int
		if err := s.r.QueryRow(`SELECT json_array_length(eq_keys) FROM resources WHERE type = 'Task' AND id = ?`, id).Scan(&stored); err != nil {
			t.Fatal(err)
		}
		if stored != len(all) || keyRows(id) != want {
			t.Errorf("%s: %d keys in eq_keys, %d rows, want %d and %d", id, stored, keyRows(id), len(all), want)
		}
	}
	if n := count(t, s, &resources.Query{Type: "Task", Count: 10, Clauses: []resources.Clause{{AnyKey: []string{resources.PresentKey("owner")}}}}); n != 3 {
		t.Errorf("owner:missing=false after the migration: %d Tasks, want 3", n)
	}

	// An update and a delete of migrated resources leave none of their old keys.
	if err := s.Put(ctx, testTask("a", 2, "org-a2", "a")); err != nil {
		t.Fatal(err)
	}
	del := testTask("c", 2, "org-c", "c")
	del.Deleted, del.JSON = true, nil
	if err := s.Put(ctx, del); err != nil {
		t.Fatal(err)
	}
	if got := keyRows("a"); got != want {
		t.Errorf("a after its update: %d key rows, want %d", got, want)
	}
	if got := keyRows("c"); got != 0 {
		t.Errorf("c after its delete: %d key rows, want 0", got)
	}
	for owner, wantN := range map[string]int{"org-a": 0, "org-a2": 1, "org-b": 0, "org-b2": 1, "org-c": 0} {
		if got := count(t, s, byOwner(owner)); got != wantN {
			t.Errorf("owner %s: %d Tasks found, want %d", owner, got, wantN)
		}
	}
}

// TestMigrateSorts opens a database in the layout from before resources.sorts (the _sort
// values in a sort_keys table, one row per resource and parameter) and checks that the store
// moves them into the resources' rows and drops the table: _sort orders as before, and what
// the migrated resources are then updated to sorts by its new value.
func TestMigrateSorts(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(ctx, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []struct{ id, owner string }{{"a", "org-c"}, {"b", "org-a"}, {"c", "org-b"}} {
		if err := s.Put(ctx, testTask(r.id, 1, r.owner, r.id)); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()

	db := oldLayout(t, dir,
		`CREATE TABLE sort_keys (type TEXT NOT NULL, id TEXT NOT NULL, param TEXT NOT NULL, asc_value TEXT NOT NULL, desc_value TEXT NOT NULL, PRIMARY KEY (type, id, param)) WITHOUT ROWID`,
		`INSERT INTO sort_keys SELECT r.type, r.id, j.key, j.value ->> 0, j.value ->> 1 FROM resources r, json_each(r.sorts) j`,
		`ALTER TABLE resources DROP COLUMN sorts`)
	var rows int
	if err := db.QueryRow(`SELECT count(*) FROM sort_keys WHERE param = 'owner'`).Scan(&rows); err != nil || rows != 3 {
		t.Fatalf("the old layout has %d owner rows (%v), want 3", rows, err)
	}
	db.Close()

	s = reopenGone(t, dir, "sort_keys")
	order := func(desc bool) []string {
		t.Helper()
		page, err := s.Search(ctx, &resources.Query{Type: "Task", Count: 10, SortBy: []resources.SortField{{Param: "owner", Desc: desc}}})
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, r := range page.Resources {
			ids = append(ids, r.ID)
		}
		return ids
	}
	if got, want := order(false), []string{"b", "c", "a"}; !slices.Equal(got, want) {
		t.Errorf("_sort=owner after the migration: %v, want %v", got, want)
	}
	if got, want := order(true), []string{"a", "c", "b"}; !slices.Equal(got, want) {
		t.Errorf("_sort=-owner after the migration: %v, want %v", got, want)
	}
	if err := s.Put(ctx, testTask("a", 2, "org-0", "a")); err != nil {
		t.Fatal(err)
	}
	if got, want := order(false), []string{"a", "b", "c"}; !slices.Equal(got, want) {
		t.Errorf("_sort=owner after an update: %v, want %v", got, want)
	}
}

// oldLayout runs stmts on the (closed) store's database in dir, to give it the layout of an
// older build; the caller closes the connection it returns.
func oldLayout(t *testing.T, dir string, stmts ...string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	for _, stmt := range stmts {
		if _, err := db.Exec(stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	return db
}

// reopenGone opens the store in dir again (closed when the test ends), which migrates it,
// and checks that the table or index named gone no longer exists.
func reopenGone(t *testing.T, dir, gone string) *Store {
	t.Helper()
	s, err := Open(context.Background(), dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	var n int
	if err := s.r.QueryRow(`SELECT count(*) FROM sqlite_schema WHERE name = ?`, gone).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%s still there (%d, %v)", gone, n, err)
	}
	return s
}

// TestMigrateLogged: a migration step still running after a second is logged, and again when
// it ends; a quick one, or one without a logger, says nothing.
func TestMigrateLogged(t *testing.T) {
	var buf strings.Builder
	log := slog.New(slog.NewTextHandler(&buf, nil))
	quick := func(context.Context, *sql.DB) error { return nil }
	slow := func(context.Context, *sql.DB) error { time.Sleep(1200 * time.Millisecond); return nil }
	if err := migrateLogged(context.Background(), nil, log, "quick", quick); err != nil || buf.Len() != 0 {
		t.Fatalf("a quick step: %v, logged %q", err, buf.String())
	}
	if err := migrateLogged(context.Background(), nil, nil, "slow, no logger", slow); err != nil {
		t.Fatal(err)
	}
	if err := migrateLogged(context.Background(), nil, log, "slow", slow); err != nil {
		t.Fatal(err)
	}
	got := buf.String()
	if !strings.Contains(got, "older version up to date, once") || !strings.Contains(got, "brought up to date") || strings.Count(got, "step=slow") != 2 {
		t.Errorf("a slow step logged %q", got)
	}
}
