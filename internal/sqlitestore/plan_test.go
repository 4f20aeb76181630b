package sqlitestore

import (
	"context"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/calaimfhir/calaimfhir/resources"
)

// TestQueryPlans_PollingUsesIndexes checks with EXPLAIN QUERY PLAN that the SDOHCC polling
// searches are answered from indexes, never by scanning a table.
func TestQueryPlans_PollingUsesIndexes(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, q := range []string{
		"owner=Organization/cbo-a&_lastUpdated=gt2025-01-01T00:00:00Z&_sort=_lastUpdated",
		"owner:missing=true&status=requested",
		"patient=Patient/p1&status=requested,accepted",
		"identifier=urn:referral|R-1",
		"code=http://hl7.org/fhir/CodeSystem/task-code|fulfill&_lastUpdated=gt2025-01-01T00:00:00Z",
	} {
		values, _ := url.ParseQuery(q)
		sr, err := resources.ParseSearch("Task", values, "", true)
		if err != nil {
			t.Fatal(err)
		}
		sr.Query.Total = true
		c := compileSearch(&sr.Query)
		for _, stmt := range []struct {
			sql  string
			args []any
		}{{c.page, c.pageArgs}, {c.count, c.countArgs}} {
			rows, err := s.r.QueryContext(ctx, "EXPLAIN QUERY PLAN "+stmt.sql, stmt.args...)
			if err != nil {
				t.Fatal(err)
			}
			var plan []string
			for rows.Next() {
				var id, parent, notused int
				var detail string
				if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
					t.Fatal(err)
				}
				plan = append(plan, detail)
			}
			rows.Close()
			t.Logf("Task?%s: %q", q, plan)
			for _, step := range plan {
				// json_each over one row's eq_keys (a present key's test) is not a table scan.
				if strings.HasPrefix(step, "SCAN") && !strings.Contains(step, "VIRTUAL TABLE") {
					t.Errorf("Task?%s: table scan in plan %q", q, plan)
				}
			}
			if strings.Contains(stmt.sql, "ORDER BY") && strings.Contains(strings.Join(plan, ";"), "TEMP B-TREE") {
				t.Errorf("Task?%s: sorts instead of reading in index order: %q", q, plan)
			}
		}
	}
}

// TestQueryPlans_KeyDeleteByPrimaryKey: an update deletes the old version's search keys by
// primary key (search_keys has no other index).
func TestQueryPlans_KeyDeleteByPrimaryKey(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rows, err := s.r.QueryContext(ctx, "EXPLAIN QUERY PLAN "+sqlDelKeysIn+"(?, ?)", "Task", 1, "t1", "a", "b")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, notused int
		var detail string
		if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	t.Logf("%q", plan)
	if !slices.Contains(plan, "SEARCH search_keys USING PRIMARY KEY (type=? AND key=? AND lu=? AND id=?)") {
		t.Errorf("the key delete does not look its rows up by primary key: %q", plan)
	}
}
