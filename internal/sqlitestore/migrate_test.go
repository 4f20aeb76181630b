package sqlitestore

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
)

// TestMigrateEqKeys opens a database in the layout from before resources.eq_keys (the column
// absent, search_keys indexed on (type, id)) and checks that the store migrates it: the keys
// of existing resources are filled in, the index is gone, and updating or deleting such a
// resource removes its old keys.
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

	// Back to the old layout.
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	for _, stmt := range []string{
		`ALTER TABLE resources DROP COLUMN eq_keys`,
		`CREATE INDEX search_keys_resource ON search_keys (type, id)`,
	} {
		if _, err := db.Exec(stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	db.Close()

	s, err = Open(ctx, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var n int
	if err := s.r.QueryRow(`SELECT count(*) FROM sqlite_schema WHERE name = 'search_keys_resource'`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("search_keys_resource still there (%d, %v)", n, err)
	}
	keyRows := func(id string) int {
		t.Helper()
		var n int
		if err := s.r.QueryRow(`SELECT count(*) FROM search_keys WHERE type = 'Task' AND id = ?`, id).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	want := len(testTask("x", 1, "org-x", "x").Keys.Eq)
	for _, id := range []string{"a", "b", "c"} {
		var stored int
		if err := s.r.QueryRow(`SELECT json_array_length(eq_keys) FROM resources WHERE type = 'Task' AND id = ?`, id).Scan(&stored); err != nil {
			t.Fatal(err)
		}
		if stored != want || keyRows(id) != want {
			t.Errorf("%s: %d keys in eq_keys, %d rows, want %d", id, stored, keyRows(id), want)
		}
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
