package resources

import (
	"encoding/json"
	"testing"
	"time"
)

func TestConsentPermits(t *testing.T) {
	now := time.Date(2026, 3, 15, 12, 0, 0, 0, time.UTC)
	const org = "Organization/cbo-a"
	label := func(code string) string {
		return `{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"` + code + `"}`
	}
	actor := `"actor":[{"reference":{"reference":"Organization/cbo-a"}}]`
	cases := []struct {
		name          string
		consent       string
		ok            bool
		eth, psy, hiv bool
	}{
		{"permit, no labels", `{"status":"active","provision":{"type":"permit",` + actor + `}}`, true, false, false, false},
		{"no type means permit", `{"status":"active","provision":{` + actor + `}}`, true, false, false, false},
		{"top-level labels", `{"status":"active","provision":{"type":"permit",` + actor + `,"securityLabel":[` + label("ETH") + `,` + label("HIV") + `]}}`, true, true, false, true},
		{"nested permit labels", `{"status":"active","provision":{` + actor + `,"provision":[{"type":"permit","securityLabel":[` + label("PSY") + `]}]}}`, true, false, true, false},
		{"nested deny takes a label back", `{"status":"active","provision":{` + actor + `,"securityLabel":[` + label("ETH") + `,` + label("PSY") + `],"provision":[{"type":"deny","securityLabel":[` + label("ETH") + `]}]}}`, true, false, true, false},
		{"nested provision for another actor", `{"status":"active","provision":{` + actor + `,"provision":[{"type":"permit","actor":[{"reference":{"reference":"Organization/x"}}],"securityLabel":[` + label("ETH") + `]}]}}`, true, false, false, false},
		{"nested provision out of period", `{"status":"active","provision":{` + actor + `,"provision":[{"type":"permit","period":{"end":"2026-01-01"},"securityLabel":[` + label("ETH") + `]}]}}`, true, false, false, false},
		{"in period", `{"status":"active","provision":{` + actor + `,"period":{"start":"2026-01-01","end":"2026-03-15"}}}`, true, false, false, false},
		{"period ended the day before", `{"status":"active","provision":{` + actor + `,"period":{"end":"2026-03-14"}}}`, false, false, false, false},
		{"period not started", `{"status":"active","provision":{` + actor + `,"period":{"start":"2026-03-16"}}}`, false, false, false, false},
		{"inactive (revoked)", `{"status":"inactive","provision":{` + actor + `}}`, false, false, false, false},
		{"deny", `{"status":"active","provision":{"type":"deny",` + actor + `}}`, false, false, false, false},
		{"another organization", `{"status":"active","provision":{"actor":[{"reference":{"reference":"Organization/cbo-b"}}]}}`, false, false, false, false},
		{"no provision", `{"status":"active"}`, false, false, false, false},
		{"unparseable period", `{"status":"active","provision":{` + actor + `,"period":{"end":"soon"}}}`, false, false, false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var doc map[string]any
			if err := json.Unmarshal([]byte(tc.consent), &doc); err != nil {
				t.Fatal(err)
			}
			mask, ok := consentPermits(doc, org, now)
			if ok != tc.ok {
				t.Fatalf("ok = %v, want %v", ok, tc.ok)
			}
			for code, want := range map[string]bool{"ETH": tc.eth, "PSY": tc.psy, "HIV": tc.hiv} {
				if got := mask&labelBit(code) != 0; got != want {
					t.Errorf("%s granted = %v, want %v", code, got, want)
				}
			}
		})
	}
}
