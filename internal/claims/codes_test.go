package claims_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/calaimfhir/calaimfhir/internal/claims"
)

func TestValidNPI(t *testing.T) {
	for npi, want := range map[string]bool{
		"1234567893":  true, // the CMS example
		"1987654328":  true,
		"1234567890":  false, // wrong check digit
		"123456789":   false,
		"12345678931": false,
		"123456789X":  false,
		"":            false,
		"0000000000":  false,
	} {
		if got := claims.ValidNPI(npi); got != want {
			t.Errorf("ValidNPI(%q) = %v, want %v", npi, got, want)
		}
	}
}

func day(s string) time.Time {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestDiagnosisProblem(t *testing.T) {
	r := claims.DefaultRules()
	for _, tc := range []struct {
		code, date string
		billable   bool
	}{
		{"Z59.0", "2021-09-30", true}, // before FY22 it was the code
		{"Z59.0", "2021-10-01", false},
		{"Z59.00", "2025-01-01", true},
		{"Z59.02", "2021-09-30", false}, // not yet effective
		{"Z59.4", "2024-06-01", false},
		{"Z59.41", "2024-06-01", true},
		{"Z59.1", "2023-03-31", true},
		{"Z59.1", "2023-04-01", false},
		{"Z59.10", "2023-03-31", false},
		{"Z59.12", "2023-04-01", true},
		{"Z59.86", "2025-09-30", true},
		{"Z59.86", "2025-10-01", false}, // header from FY26
		{"Z59.861", "2025-09-30", false},
		{"Z59.861", "2025-10-01", true},
		{"Z59.8", "2024-01-01", false}, // header: Z59.81x, Z59.82, ...
		{"Z59", "2024-01-01", false},
		{"Z55.6", "2023-03-31", false},
		{"Z55.6", "2023-04-01", true},
		{"Z56.0", "2015-01-01", true},
		{"E11.9", "2025-01-01", true}, // not in the table: not judged
	} {
		p := r.DiagnosisProblem(tc.code, day(tc.date))
		if (p == nil) != tc.billable {
			t.Errorf("%s on %s: problem %v, want billable=%v", tc.code, tc.date, p, tc.billable)
		}
		if p != nil && p.Code != claims.DiagnosisNotBillable {
			t.Errorf("%s: code %s", tc.code, p.Code)
		}
	}
}

func TestMatchService(t *testing.T) {
	r := claims.DefaultRules()
	cpt, hcpcs := claims.CodeSystemURI["cpt"], claims.CodeSystemURI["hcpcs"]
	for _, tc := range []struct {
		name      string
		system    string
		code      string
		modifiers []string
		date      string
		service   string // "" when a problem is expected
		problem   string
	}{
		{"chw individual", cpt, "98960", nil, "2024-01-01", "chw-individual", ""},
		{"chw with telehealth and U2", cpt, "98960", []string{"U2", "95"}, "2024-01-01", "chw-individual", ""},
		{"chw with a CS modifier", cpt, "98960", []string{"U6"}, "2024-01-01", "", claims.ModifierNotAllowed},
		{"cpt code as hcpcs system", hcpcs, "98960", nil, "2024-01-01", "", claims.CodeNotAllowed},
		{"G0019 too early", hcpcs, "G0019", nil, "2025-03-31", "", claims.ServiceNotEffective},
		{"G0019", hcpcs, "G0019", nil, "2025-04-01", "community-health-integration", ""},
		{"ECM outreach", hcpcs, "G9012", []string{"U8"}, "2024-01-01", "ecm-outreach", ""},
		{"ECM telehealth", hcpcs, "G9008", []string{"U1", "GQ"}, "2024-01-01", "ecm", ""},
		{"ECM without modifier", hcpcs, "G9008", nil, "2024-01-01", "", claims.ModifierNotAllowed},
		{"ECM two service modifiers", hcpcs, "G9008", []string{"U1", "U2"}, "2024-01-01", "", claims.ModifierNotAllowed},
		{"H0043-U6 navigation", hcpcs, "H0043", []string{"U6"}, "2024-01-01", "cs-housing-transition-navigation", ""},
		{"H0043-U3 post-hospitalization", hcpcs, "H0043", []string{"U3"}, "2024-01-01", "cs-short-term-post-hospitalization-housing", ""},
		{"H0043-U2 transitional rent", hcpcs, "H0043", []string{"U2"}, "2025-07-01", "cs-transitional-rent", ""},
		{"S9977-U4 from 2026", hcpcs, "S9977", []string{"U4"}, "2025-12-31", "", claims.ServiceNotEffective},
		{"S9977-U4", hcpcs, "S9977", []string{"U4"}, "2026-01-01", "cs-medically-tailored-meals", ""},
		{"unknown", hcpcs, "Z9999", nil, "2024-01-01", "", claims.CodeNotAllowed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, p := r.MatchService(tc.system, tc.code, tc.modifiers, day(tc.date))
			switch {
			case tc.problem != "" && (p == nil || p.Code != tc.problem):
				t.Errorf("problem %v, want %s", p, tc.problem)
			case tc.problem == "" && (p != nil || s.Service != tc.service):
				t.Errorf("service %v problem %v, want %s", s, p, tc.service)
			}
		})
	}
}

func TestLoadRules_ReplacementCatalog(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "catalog.json")
	os.WriteFile(path, []byte(`{"version":"test","programs":[{"code":"chw","supervisor":true}],
		"services":[{"program":"chw","service":"chw-individual","system":"cpt","codes":["98960"],"to":"2025-01-01"}]}`), 0o644)
	r, err := claims.LoadRules(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, p := r.MatchService(claims.CodeSystemURI["cpt"], "98960", nil, day("2025-01-01")); p == nil || p.Code != claims.ServiceNotEffective {
		t.Errorf("replacement end date not applied: %v", p)
	}
	if _, p := r.MatchService(claims.CodeSystemURI["hcpcs"], "G9008", []string{"U1"}, day("2024-01-01")); p == nil || p.Code != claims.CodeNotAllowed {
		t.Errorf("ECM is not in the replacement catalog: %v", p)
	}
	for name, bad := range map[string]string{
		"not JSON":        `{`,
		"unknown field":   `{"programs":[],"services":[],"extra":1}`,
		"unknown program": `{"programs":[],"services":[{"program":"x","service":"s","system":"cpt","codes":["1"]}]}`,
		"bad system":      `{"programs":[{"code":"x"}],"services":[{"program":"x","service":"s","system":"loinc","codes":["1"]}]}`,
		"bad date":        `{"programs":[{"code":"x"}],"services":[{"program":"x","service":"s","system":"cpt","codes":["1"],"from":"2025-13-01"}]}`,
		"bad group size":  `{"programs":[{"code":"x"}],"services":[{"program":"x","service":"s","system":"cpt","codes":["1"],"groupSize":[3,1]}]}`,
	} {
		os.WriteFile(path, []byte(bad), 0o644)
		if _, err := claims.LoadRules(path); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := claims.LoadRules(filepath.Join(dir, "missing.json")); err == nil {
		t.Error("missing file accepted")
	}
}
