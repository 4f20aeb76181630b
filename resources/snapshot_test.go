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
