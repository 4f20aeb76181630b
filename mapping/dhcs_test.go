package mapping_test

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/calaimfhir/calaimfhir/mapping"
	"github.com/calaimfhir/calaimfhir/profiles"
)

// storedDataset is the fixed dataset of the DHCS file tests: every fixture imported as a
// server would store it (ids from the fullUrls, references rewritten, conditional references
// resolved), then a few referrals worked by their CBOs.
func storedDataset(t *testing.T) *mapping.Dataset {
	t.Helper()
	all := mapping.NewBundle()
	for _, f := range []struct{ format, file string }{
		{"referral", "referral.json"}, {"referral", "referral.csv"}, {"dhcs-mif", "dhcs-mif.csv"}, {"dhcs-mif", "dhcs-mif.json"},
		{"chw-encounter", "chw-encounter.json"}, {"chw-encounter", "chw-encounter.csv"},
	} {
		results, err := mapping.Convert(f.format, read(t, f.format, f.file), mapping.Options{})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range results {
			if r.Bundle != nil {
				all.Merge(r.Bundle)
			}
		}
	}
	var tx struct {
		Entry []struct {
			FullURL  string         `json:"fullUrl"`
			Resource map[string]any `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(all.Transaction(), &tx); err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{} // fullUrl → Type/id
	cins := map[string]string{}
	for _, e := range tx.Entry {
		typ := e.Resource["resourceType"].(string)
		id := strings.TrimPrefix(e.FullURL, "urn:uuid:")
		e.Resource["id"] = id
		ids[e.FullURL] = typ + "/" + id
		if typ == "Patient" {
			cin := e.Resource["identifier"].([]any)[0].(map[string]any)["value"].(string)
			cins[cin] = typ + "/" + id
		}
		e.Resource["meta"] = map[string]any{"lastUpdated": "2026-03-10T09:00:00Z"}
	}
	var rewrite func(v any)
	rewrite = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, val := range x {
				if s, ok := val.(string); ok && k == "reference" {
					if r, ok := ids[s]; ok {
						x[k] = r
					} else if q, ok := strings.CutPrefix(s, "Patient?"); ok {
						v, _ := url.ParseQuery(q)
						_, cin, _ := strings.Cut(v.Get("identifier"), "|")
						x[k] = cins[cin]
					}
					continue
				}
				rewrite(val)
			}
		case []any:
			for _, it := range x {
				rewrite(it)
			}
		}
	}
	d := mapping.NewDataset()
	for _, e := range tx.Entry {
		rewrite(e.Resource)
		work(e.Resource)
		d.Add(e.Resource)
	}
	return d
}

// work applies what the CBOs did with some referrals.
func work(res map[string]any) {
	if res["resourceType"] != "Task" {
		return
	}
	id := res["identifier"].([]any)[0].(map[string]any)["value"].(string)
	switch id {
	case "IEHP-2026-0001": // accepted by the meals CBO
		res["status"] = "accepted"
		res["lastModified"] = "2026-03-04T16:00:00Z"
	case "LAC-77": // housing navigation done
		res["status"] = "completed"
		res["statusReason"] = map[string]any{"text": "services provided"}
		res["lastModified"] = "2026-03-20T10:00:00Z"
	case "LAC-78": // closed in February: not in a March file
		res["status"] = "cancelled"
		res["statusReason"] = map[string]any{"text": "member moved out of county"}
		res["lastModified"] = "2026-02-20T10:00:00Z"
	case "dhcs-mif/LACARE/12345678C/1333444556": // enrolled in ECM
		res["status"] = "in-progress"
		res["executionPeriod"] = map[string]any{"start": "2026-03-05"}
		res["lastModified"] = "2026-03-05T11:00:00Z"
	case "dhcs-mif/LACARE/32345678E/1333444556": // declined
		res["status"] = "rejected"
		res["statusReason"] = map[string]any{"coding": []any{map[string]any{"system": profiles.ClosureReasonSystem, "code": "member-declined"}}}
		res["lastModified"] = "2026-03-06T11:00:00Z"
	}
}

func TestDHCSFiles_Golden(t *testing.T) {
	d := storedDataset(t)
	produced := time.Date(2026, 4, 2, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name, kind, plan, period string
		wantRows                 int
	}{
		{"rtf-LACARE-2026-03.csv", "rtf", "LACARE", "2026-03", 3}, // LAC-77 (closed in March), both MIF assignments; not LAC-78
		{"rtf-IEHP-2026-03.csv", "rtf", "IEHP", "2026-03", 2},     // two referrals; the MIF assignment is April's
		{"rtf-IEHP-2026-02.csv", "rtf", "IEHP", "2026-02", 0},     // nothing authored yet
		{"otf-IEHP-2026-03.csv", "otf", "IEHP", "2026-03", 2},
		{"otf-LACARE-2026-02.csv", "otf", "LACARE", "2026-02", 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []byte
			var err error
			if tc.kind == "rtf" {
				got, err = mapping.ReturnTransmissionFile(d, tc.plan, tc.period, produced)
			} else {
				got, err = mapping.OutreachTrackerFile(d, tc.plan, tc.period)
			}
			if err != nil {
				t.Fatal(err)
			}
			if rows := strings.Count(string(got), "\n") - 1; rows != tc.wantRows {
				t.Errorf("%d rows, want %d:\n%s", rows, tc.wantRows, got)
			}
			golden(t, tc.name, got)
		})
	}
	if _, err := mapping.ReturnTransmissionFile(d, "IEHP", "2026-3", produced); err == nil {
		t.Error("a bad period is accepted")
	}
}
