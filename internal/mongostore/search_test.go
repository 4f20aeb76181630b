package mongostore

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/calaimfhir/calaimfhir/resources"
)

// TestCompile_PlainEqualitiesAtTopLevel checks the shape of compiled filters: one-value keys
// are top-level equalities (the form FerretDB pushes down to its backend), each field at most
// once, and everything else stays under $and. What the filters match is the conformance
// suite's business.
func TestCompile_PlainEqualitiesAtTopLevel(t *testing.T) {
	from := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		clauses []resources.Clause
		want    bson.D
	}{
		{
			name:    "no clause",
			clauses: nil,
			want:    bson.D{{Key: "del", Value: false}},
		},
		{
			name:    "one key",
			clauses: []resources.Clause{{AnyKey: []string{"owner\x1fOrganization/a"}}},
			want:    bson.D{{Key: "del", Value: false}, {Key: "k", Value: "owner\x1fOrganization/a"}},
		},
		{
			name: "two keys: the second under $and, since a filter cannot repeat k",
			clauses: []resources.Clause{
				{AnyKey: []string{"owner\x1fOrganization/a"}},
				{AnyKey: []string{"status\x1f\x1frequested"}},
			},
			want: bson.D{
				{Key: "del", Value: false},
				{Key: "k", Value: "owner\x1fOrganization/a"},
				{Key: "$and", Value: bson.A{bson.D{{Key: "k", Value: "status\x1f\x1frequested"}}}},
			},
		},
		{
			name: "several values stay $in, after a one-value key",
			clauses: []resources.Clause{
				{AnyKey: []string{"status\x1f\x1fready", "status\x1f\x1frequested"}},
				{AnyKey: []string{"owner\x1fOrganization/a"}},
			},
			want: bson.D{
				{Key: "del", Value: false},
				{Key: "k", Value: "owner\x1fOrganization/a"},
				{Key: "$and", Value: bson.A{bson.D{{Key: "k", Value: bson.D{{Key: "$in", Value: bson.A{"status\x1f\x1fready", "status\x1f\x1frequested"}}}}}}},
			},
		},
		{
			name:    "one id",
			clauses: []resources.Clause{{IDs: []string{"t1"}}, {AnyKey: []string{"owner\x1fOrganization/a"}}},
			want:    bson.D{{Key: "del", Value: false}, {Key: "_id", Value: "t1"}, {Key: "k", Value: "owner\x1fOrganization/a"}},
		},
		{
			name: "ranges, exclusions and ids stay under $and",
			clauses: []resources.Clause{
				{AnyKey: []string{"owner\x1fOrganization/a"}},
				{LastUpdated: []resources.DateRange{{From: from}}},
				{NoKey: []string{"status\x1f\x1fcancelled"}},
				{IDs: []string{"t1", "t2"}},
			},
			want: bson.D{
				{Key: "del", Value: false},
				{Key: "k", Value: "owner\x1fOrganization/a"},
				{Key: "$and", Value: bson.A{
					bson.D{{Key: "lu", Value: bson.D{{Key: "$gte", Value: from.UnixMicro()}}}},
					bson.D{{Key: "k", Value: bson.D{{Key: "$nin", Value: bson.A{"status\x1f\x1fcancelled"}}}}},
					bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: bson.A{"t1", "t2"}}}}},
				}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, values, none := compile(tt.clauses)
			if none || len(values) > 0 {
				t.Fatalf("compile: none=%v, %d value clauses", none, len(values))
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("filter (-want +got):\n%s", diff)
			}
		})
	}
}
