package terminology_test

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/calaimfhir/calaimfhir/profiles"
	"github.com/calaimfhir/calaimfhir/terminology"
)

func day(s string) time.Time {
	t, err := time.Parse("2006-01-02", s)
	if err != nil {
		panic(err)
	}
	return t
}

// The embedded files use the canonical URLs of profiles/canon.go.
func TestSystemsMatchCanon(t *testing.T) {
	set := terminology.Default()
	for _, system := range []string{profiles.ProgramSystem, profiles.ServiceSystem, profiles.PopulationOfFocusSystem,
		profiles.ReferralStatusSystem, profiles.ClosureReasonSystem, profiles.CHWServiceTypeSystem, profiles.ICD10CMSystem,
		profiles.CPTSystem, profiles.HCPCSSystem, profiles.LOINCSystem, profiles.SDOHCCCategorySystem, profiles.POSSystem} {
		if known, _ := set.KnowsSystem(system); !known {
			t.Errorf("no code system %s", system)
		}
	}
	for _, r := range set.ValueSets() {
		if want := profiles.Base + "/ValueSet/" + r.ID; r.URL != want {
			t.Errorf("ValueSet %s has url %s, want %s", r.ID, r.URL, want)
		}
		if _, err := set.Expand(r.URL, time.Time{}, ""); err != nil {
			t.Errorf("ValueSet %s: %v", r.ID, err)
		}
	}
}

func TestZCodeBillable(t *testing.T) {
	set := terminology.Default()
	tests := []struct {
		code, date      string
		billable, known bool
	}{
		{"Z59.41", "2021-10-01", true, true},
		{"Z59.41", "2021-09-30", false, true},
		{"Z59.4", "2021-09-30", true, true},
		{"Z59.4", "2021-10-01", false, true},
		{"Z59.1", "2023-03-31", true, true},
		{"Z59.1", "2023-04-01", false, true},
		{"Z59.10", "2023-04-01", true, true},
		{"Z59.86", "2025-09-30", true, true},
		{"Z59.86", "2025-10-01", false, true},
		{"Z59.861", "2025-10-01", true, true},
		{"Z55.6", "2023-03-31", false, true},
		{"Z56.0", "2016-01-01", true, true},
		{"E11.9", "2024-01-01", false, false},
	}
	for _, tc := range tests {
		billable, known, _ := set.ZCodeBillable(tc.code, day(tc.date))
		if billable != tc.billable || known != tc.known {
			t.Errorf("ZCodeBillable(%s, %s) = %v, %v; want %v, %v", tc.code, tc.date, billable, known, tc.billable, tc.known)
		}
	}
}

func TestServiceCatalog(t *testing.T) {
	set := terminology.Default()
	cs, chw, ecm := len(set.ServicesIn("community-supports")), len(set.ServicesIn("chw")), len(set.ServicesIn("ecm"))
	if len(set.Services()) != cs+chw+ecm || ecm != 1 {
		t.Fatalf("%d services, %d CS + %d CHW + %d ECM", len(set.Services()), cs, chw, ecm)
	}
	if cs != 15 || chw != 4 {
		t.Fatalf("%d Community Supports (want 15 with Transitional Rent) and %d CHW services (want 4)", cs, chw)
	}
	tests := []struct {
		system, code string
		mods         []string
		want         []string
	}{
		{profiles.HCPCSSystem, "T2033", []string{"U6"}, []string{"cs-recuperative-care"}},
		{profiles.HCPCSSystem, "H0044", []string{"U3"}, []string{"cs-short-term-post-hospitalization-housing"}},
		{profiles.HCPCSSystem, "H0043", []string{"U2"}, []string{"cs-transitional-rent"}},
		{profiles.HCPCSSystem, "S5165", []string{"U5"}, []string{"cs-asthma-remediation"}},
		{profiles.HCPCSSystem, "G9008", []string{"GQ", "U1"}, []string{"ecm"}},
		{profiles.HCPCSSystem, "T2033", nil, nil},
		{profiles.HCPCSSystem, "T2033", []string{"U5"}, nil},
		{profiles.CPTSystem, "98961", nil, []string{"chw-health-education", "chw-health-navigation", "chw-individual-support", "chw-screening-assessment"}},
		{profiles.CPTSystem, "T2033", []string{"U6"}, nil},
	}
	for _, tc := range tests {
		var got []string
		for _, s := range set.ServicesFor(tc.system, tc.code, tc.mods) {
			got = append(got, s.Code)
		}
		slices.Sort(got)
		if !slices.Equal(got, tc.want) {
			t.Errorf("ServicesFor(%s %v) = %v, want %v", tc.code, tc.mods, got, tc.want)
		}
	}
	rent, ok := set.Service("cs-transitional-rent")
	if !ok || !rent.Start.Equal(day("2025-07-01")) || !rent.Unverified {
		t.Errorf("Transitional Rent: %+v", rent)
	}
	if chwSvc, _ := set.Service("chw-health-navigation"); chwSvc.Unverified {
		t.Errorf("the CHW codes come from the benefit itself and are not flagged unverified")
	}
}

func TestExpandAndValidateCode(t *testing.T) {
	set := terminology.Default()
	mods, err := set.Expand(profiles.Base+"/ValueSet/calaim-modifiers", time.Time{}, "")
	if err != nil || len(mods) != 10 {
		t.Fatalf("modifiers: %d, %v", len(mods), err)
	}
	codes, _ := set.Expand(profiles.Base+"/ValueSet/calaim-billing-codes", time.Time{}, "")
	for _, c := range codes {
		if c.Code == "U6" {
			t.Fatalf("a modifier is listed as a billing code")
		}
	}
	questions, _ := set.Expand(profiles.Base+"/ValueSet/sdoh-screening-loinc", time.Time{}, "")
	answers, _ := set.Expand(profiles.Base+"/ValueSet/hunger-vital-sign-answers", time.Time{}, "")
	if len(questions) != 26 || len(answers) != 4 || answers[0].Display != "Often true" {
		t.Fatalf("%d screening questions (want 26), answers %v", len(questions), answers)
	}
	for _, q := range questions {
		if q.Code[:2] == "LA" {
			t.Fatalf("answer %s listed as a screening question", q.Code)
		}
	}
	if _, err := set.Expand("http://example.org/none", time.Time{}, ""); err == nil {
		t.Fatal("unknown value set: no error")
	}
	v, err := set.ValidateCode(profiles.Base+"/ValueSet/chw-billing-codes", profiles.HCPCSSystem, "G0019", day("2025-03-31"))
	if err != nil || v.Valid || v.Message == "" {
		t.Fatalf("G0019 before 2025-04-01: %+v %v", v, err)
	}
	v, _ = set.ValidateCode(profiles.Base+"/ValueSet/chw-billing-codes", "", "98960", time.Time{})
	if !v.Valid {
		t.Fatalf("98960 without system: %+v", v)
	}
}

func TestLoad_Overlay(t *testing.T) {
	dir := filepath.Join("..", "testdata", "terminology", "plan-overlay")
	set, err := terminology.Load(os.DirFS(dir))
	if err != nil {
		t.Fatal(err)
	}
	meals, _ := set.Service("cs-medically-tailored-meals")
	if len(meals.Billing) != 1 || meals.Billing[0].Key() != "S9470-U6" || meals.Unverified {
		t.Fatalf("overlay billing: %+v", meals)
	}
	if got := set.ServicesFor(profiles.HCPCSSystem, "S5170", []string{"U6"}); len(got) != 0 {
		t.Fatalf("S5170-U6 should be gone with the plan's table: %v", got)
	}
	if !set.HasValueSet("https://plan.example.org/fhir/ValueSet/priority-services") {
		t.Fatal("overlay value set not added")
	}
	if terminology.Default().HasValueSet("https://plan.example.org/fhir/ValueSet/priority-services") {
		t.Fatal("the overlay changed the default set")
	}
	if _, err := terminology.Load(os.DirFS(filepath.Join("..", "testdata", "terminology", "broken"))); err == nil {
		t.Fatal("a Patient in the terminology folder: no error")
	}
}
