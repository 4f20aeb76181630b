package resources_test

import (
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/calaimfhir/calaimfhir/resources"
)

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	tm, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return tm.UTC()
}

func TestParseDateParam_PrefixesAndPrecision(t *testing.T) {
	cases := []struct {
		in       string
		from, to string // "" = unbounded
		not      bool
	}{
		{"2024", "2024-01-01T00:00:00Z", "2025-01-01T00:00:00Z", false},
		{"eq2024-05", "2024-05-01T00:00:00Z", "2024-06-01T00:00:00Z", false},
		{"2024-02-29", "2024-02-29T00:00:00Z", "2024-03-01T00:00:00Z", false},
		{"ne2024-05-01", "2024-05-01T00:00:00Z", "2024-05-02T00:00:00Z", true},
		{"gt2024-05-01", "2024-05-02T00:00:00Z", "", false},
		{"sa2024-05-01", "2024-05-02T00:00:00Z", "", false},
		{"ge2024-05-01", "2024-05-01T00:00:00Z", "", false},
		{"lt2024-05-01", "", "2024-05-01T00:00:00Z", false},
		{"eb2024-05-01", "", "2024-05-01T00:00:00Z", false},
		{"le2024-05-01", "", "2024-05-02T00:00:00Z", false},
		{"2024-05-01T10:30:00-07:00", "2024-05-01T17:30:00Z", "2024-05-01T17:30:01Z", false},
		{"2024-05-01T10:30-07:00", "2024-05-01T17:30:00Z", "2024-05-01T17:31:00Z", false},
		{"2024-05-01T23:30:00+14:00", "2024-05-01T09:30:00Z", "2024-05-01T09:30:01Z", false},
		{"gt2024-05-01T10:30:00.5Z", "2024-05-01T10:30:00.6Z", "", false},
		{"2024-05-01T10:30:00.123456Z", "2024-05-01T10:30:00.123456Z", "2024-05-01T10:30:00.123457Z", false},
		{"2024-05-01T10:30:00", "2024-05-01T10:30:00Z", "2024-05-01T10:30:01Z", false},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			got, err := resources.ParseDateParam(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			want := resources.DateRange{Not: tc.not}
			if tc.from != "" {
				want.From = mustTime(t, tc.from)
			}
			if tc.to != "" {
				want.To = mustTime(t, tc.to)
			}
			if !got.From.Equal(want.From) || !got.To.Equal(want.To) || got.Not != want.Not {
				t.Fatalf("got [%v, %v) not=%v, want [%v, %v) not=%v", got.From, got.To, got.Not, want.From, want.To, want.Not)
			}
		})
	}
	for _, bad := range []string{"", "yesterday", "2024-13", "2024-05-32", "xx2024", "2024-05-01T25:00:00Z", "2024-05-01T10:00:00.Z"} {
		if _, err := resources.ParseDateParam(bad); err == nil {
			t.Errorf("%q parsed, want an error", bad)
		}
	}
}

func TestExtractKeys(t *testing.T) {
	doc := map[string]any{
		"resourceType": "Task",
		"status":       "requested",
		"identifier":   []any{map[string]any{"system": "urn:referral", "value": "R-1"}},
		"for":          map[string]any{"reference": "Patient/p1"},
		"owner":        map[string]any{"reference": "http://elsewhere.example/fhir/Organization/o9"},
		"requester":    map[string]any{"reference": "#contained"},
		"code":         map[string]any{"coding": []any{map[string]any{"system": "http://hl7.org/fhir/CodeSystem/task-code", "code": "fulfill"}}},
		"meta":         map[string]any{"tag": []any{map[string]any{"system": "urn:t", "code": "x"}}},
	}
	got := resources.ExtractKeys("Task", doc).Eq
	want := []string{
		resources.TokenKey("status", "", "requested"), resources.TokenCodeKey("status", "requested"),
		resources.TokenKey("identifier", "urn:referral", "R-1"), resources.TokenCodeKey("identifier", "R-1"), resources.TokenSystemKey("identifier", "urn:referral"),
		// patient refers to Patient only: `patient=p1` is asked as `patient=Patient/p1`, so
		// the id alone is not indexed; subject may refer to any type.
		resources.RefKey("patient", "Patient", "p1"),
		resources.RefKey("subject", "Patient", "p1"), resources.RefIDKey("subject", "p1"),
		resources.RefURLKey("owner", "http://elsewhere.example/fhir/Organization/o9"),
		resources.TokenKey("code", "http://hl7.org/fhir/CodeSystem/task-code", "fulfill"), resources.TokenCodeKey("code", "fulfill"), resources.TokenSystemKey("code", "http://hl7.org/fhir/CodeSystem/task-code"),
		resources.TokenKey("_tag", "urn:t", "x"), resources.TokenCodeKey("_tag", "x"), resources.TokenSystemKey("_tag", "urn:t"),
	}
	for _, p := range []string{"status", "identifier", "patient", "subject", "owner", "code", "_tag"} {
		want = append(want, resources.PresentKey(p))
	}
	slices.Sort(want)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("keys (-want +got):\n%s", diff)
	}
	// Absolute references to this server are local references.
	abs := resources.ExtractKeysAt("Task", map[string]any{"owner": map[string]any{"reference": "https://fhir.example.org/fhir/Organization/o1"}}, "https://fhir.example.org/fhir").Eq
	if !slices.Contains(abs, resources.RefKey("owner", "Organization", "o1")) {
		t.Fatalf("absolute reference to this server: %q", abs)
	}
	// patient only follows references to a Patient.
	other := resources.ExtractKeys("Task", map[string]any{"for": map[string]any{"reference": "Group/g1"}}).Eq
	if slices.Contains(other, resources.RefKey("patient", "Group", "g1")) || !slices.Contains(other, resources.RefKey("subject", "Group", "g1")) {
		t.Fatalf("Group subject keys: %q", other)
	}
}

func TestParseSearch_KeysMatchExtraction(t *testing.T) {
	// A query for a value must produce a key the extraction produced for it (owner=o1 is one
	// key per target type of owner, of which the stored reference has one).
	doc := map[string]any{"identifier": []any{map[string]any{"system": "urn:cin", "value": "a|b,c"}}, "owner": map[string]any{"reference": "Organization/o1"}}
	stored := resources.ExtractKeys("Task", doc).Eq
	for _, q := range []string{`identifier=urn:cin|a\|b\,c`, `identifier=a\|b\,c`, `identifier=urn:cin|`, `owner=Organization/o1`, `owner=o1`, `owner=http://base.example/fhir/Organization/o1`} {
		values, _ := url.ParseQuery(strings.ReplaceAll(q, `\`, `%5C`))
		sr, err := resources.ParseSearch("Task", values, "http://base.example/fhir", true)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		keys := sr.Query.Clauses[0].AnyKey
		if !slices.ContainsFunc(keys, func(k string) bool { return slices.Contains(stored, k) }) {
			t.Errorf("%s gives keys %q, none among the stored %q", q, keys, stored)
		}
	}
}

func TestParseSearch_LenientAndStrict(t *testing.T) {
	values := url.Values{"status": {"requested"}, "bogus": {"1"}, "owner:exact": {"x"}, "_count": {"5000"}}
	sr, err := resources.ParseSearch("Task", values, "", false)
	if err != nil {
		t.Fatal(err)
	}
	if len(sr.Query.Clauses) != 1 || len(sr.Ignored) != 2 || sr.Query.Count != resources.MaxCount {
		t.Fatalf("clauses %d ignored %d count %d", len(sr.Query.Clauses), len(sr.Ignored), sr.Query.Count)
	}
	if got := sr.Applied.Encode(); got != "_count=1000&status=requested" {
		t.Fatalf("applied %q", got)
	}
	if _, err := resources.ParseSearch("Task", values, "", true); !resources.IsKind(err, resources.KindBadRequest) {
		t.Fatalf("strict: %v", err)
	}
}

func TestCursor_RoundTripAndTampering(t *testing.T) {
	c := &resources.Cursor{LastUpdated: mustTime(t, "2024-05-01T10:30:00.123456Z"), ID: "abc-1", Version: 3}
	got, err := resources.DecodeCursor(resources.EncodeCursor(c))
	if err != nil || !got.LastUpdated.Equal(c.LastUpdated) || got.ID != c.ID || got.Version != c.Version {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	for _, bad := range []string{"", "!!", "AAAA", "MXwyfA", "MXwyfCQkJA"} {
		if _, err := resources.DecodeCursor(bad); !resources.IsKind(err, resources.KindBadRequest) {
			t.Errorf("cursor %q: %v", bad, err)
		}
	}
}

func TestEncodeResource_OrdersAndKeepsDecimals(t *testing.T) {
	dec := json.NewDecoder(strings.NewReader(`{"valueQuantity":{"value":1.50},"status":"final","meta":{"versionId":"1"},"id":"x","resourceType":"Observation","note":[{"text":"<b>&</b>"}]}`))
	dec.UseNumber()
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		t.Fatal(err)
	}
	got, err := resources.EncodeResource(doc)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"resourceType":"Observation","id":"x","meta":{"versionId":"1"},"note":[{"text":"<b>&</b>"}],"status":"final","valueQuantity":{"value":1.50}}`
	if string(got) != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}
