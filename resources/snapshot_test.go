package resources_test

import (
	"encoding/base64"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/calaimfhir/calaimfhir/resources"
)

func TestCursor_RoundTripWithSnapshot(t *testing.T) {
	at := time.Date(2026, 11, 23, 17, 0, 0, 123456000, time.UTC)
	for _, c := range []*resources.Cursor{
		{LastUpdated: at, ID: "t1"},
		{LastUpdated: at, ID: "t1", Snapshot: at.Add(time.Second)},
		{LastUpdated: at, ID: "t1", Snapshot: at.Add(time.Second), Values: []string{"a|b", "\U0010FFFF"}},
		{LastUpdated: at, ID: "t1", Values: []string{"x"}},
	} {
		got, err := resources.DecodeCursor(resources.EncodeCursor(c))
		if err != nil {
			t.Fatalf("%+v: %v", c, err)
		}
		if diff := cmp.Diff(c, got); diff != "" {
			t.Errorf("round trip (-want +got):\n%s", diff)
		}
	}
	for _, raw := range []string{"1|0|t1|@", "1|0|t1|@x", "1|0|t1|@-5", "1|0|t1|@5|", "1|0|t1|@5|[]", "1|0|t1|[1]"} {
		if _, err := resources.DecodeCursor(base64.RawURLEncoding.EncodeToString([]byte(raw))); !resources.IsKind(err, resources.KindBadRequest) {
			t.Errorf("cursor %q: %v, want a bad request", raw, err)
		}
	}
}

// TestMatches_EachClauseKind: the in-memory judge of snapshot versions gives each clause kind
// the stores' meaning.
func TestMatches_EachClauseKind(t *testing.T) {
	doc := map[string]any{"resourceType": "Task", "status": "requested", "intent": "order",
		"owner": map[string]any{"reference": "Organization/a"}, "authoredOn": "2024-05-01", "description": "Meals"}
	k := resources.ExtractKeys("Task", doc)
	r := &resources.Resource{Type: "Task", ID: "t1", LastUpdated: time.Date(2024, 5, 2, 0, 0, 0, 0, time.UTC)}
	owner := func(o string) resources.Clause {
		return resources.Clause{AnyKey: []string{resources.RefKey("owner", "Organization", o)}}
	}
	status := resources.Clause{AnyKey: []string{resources.TokenCodeKey("status", "requested")}}
	day, _ := resources.DateMatch("authored-on", "2024-05-01")
	for _, tc := range []struct {
		name    string
		clauses []resources.Clause
		want    bool
	}{
		{"key", []resources.Clause{owner("a")}, true},
		{"other key", []resources.Clause{owner("b")}, false},
		{"nokey", []resources.Clause{{NoKey: []string{resources.RefKey("owner", "Organization", "a")}}}, false},
		{"ids", []resources.Clause{{IDs: []string{"t0", "t1"}}}, true},
		{"not ids", []resources.Clause{{NotIDs: []string{"t0", "t1"}}}, false},
		{"not other ids", []resources.Clause{{NotIDs: []string{"t0"}}}, true},
		{"lastUpdated", []resources.Clause{{LastUpdated: []resources.DateRange{{To: r.LastUpdated}}}}, false},
		{"date", []resources.Clause{{Dates: []resources.ValueMatch{day}}}, true},
		{"empty clause", []resources.Clause{{}}, false},
		{"or", []resources.Clause{{Or: [][]resources.Clause{{owner("b")}, {owner("a"), status}}}}, true},
		{"or none", []resources.Clause{{Or: [][]resources.Clause{{owner("b")}, {owner("a"), {IDs: []string{"x"}}}}}}, false},
		{"or empty", []resources.Clause{{Or: [][]resources.Clause{}}}, false},
		{"and", []resources.Clause{owner("a"), status, {IDs: []string{"t1"}}}, true},
	} {
		if got := resources.Matches(tc.clauses, r, &k); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
