package mapping

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestValidNPI(t *testing.T) {
	tests := []struct {
		npi  string
		want bool
	}{
		{"1234567893", true}, // the CMS example
		{"1987654328", true},
		{"1234567890", false}, // wrong check digit
		{"123456789", false},  // 9 digits
		{"12345678933", false},
		{"12345678a3", false},
		{"", false},
	}
	for _, tc := range tests {
		if got := ValidNPI(tc.npi); got != tc.want {
			t.Errorf("ValidNPI(%q) = %v, want %v", tc.npi, got, tc.want)
		}
	}
}

func TestValidCIN(t *testing.T) {
	for cin, want := range map[string]bool{"91234567A": true, "9123456A": false, "91234567a": false, "912345678": false, "91234567AB": false} {
		if got := ValidCIN(cin); got != want {
			t.Errorf("ValidCIN(%q) = %v, want %v", cin, got, want)
		}
	}
}

// TestCHWUnits pins the rounding rule the README documents (midpoint: a 30-minute unit counts
// from 16 minutes) and the CPT code by group size.
func TestCHWUnits(t *testing.T) {
	for minutes, want := range map[int]int{1: 0, 15: 0, 16: 1, 30: 1, 45: 1, 46: 2, 75: 2, 76: 3, 90: 3, 480: 16} {
		if got := chwUnits(minutes); got != want {
			t.Errorf("chwUnits(%d) = %d, want %d", minutes, got, want)
		}
	}
	for patients, want := range map[int]string{1: "98960", 2: "98961", 4: "98961", 5: "98962", 8: "98962", 9: "", 0: ""} {
		if got, _, _ := chwCPT(patients); got != want {
			t.Errorf("chwCPT(%d) = %q, want %q", patients, got, want)
		}
	}
}

func TestCheckDiagnosis(t *testing.T) {
	day := func(s string) time.Time { d, _ := time.Parse(time.DateOnly, s); return d }
	tests := []struct {
		code, dos, wantErr string // "" = valid
	}{
		{"Z59.41", "2026-01-01", ""},
		{"Z59.0", "2026-01-01", "is a header"},
		{"Z59.0", "2021-09-30", ""}, // billable before FY22 split it
		{"Z59.01", "2021-09-30", "not valid for dates of service before 2021-10-01"},
		{"Z59.1", "2023-04-01", "is a header"},
		{"Z59.1", "2023-03-31", ""},
		{"Z59.86", "2025-09-30", ""},
		{"Z59.86", "2025-10-01", "is a header"},
		{"Z59.861", "2025-10-01", ""},
		{"Z59.82", "2022-09-30", "not valid for dates"},
		{"Z59", "2026-01-01", "category header"},
		{"Z59.99", "2026-01-01", "not a known SDOH Z-code"},
		{"Z5941", "2026-01-01", "dotted form (Z59.41)"},
		{"E11.9", "2026-01-01", ""},
		{"hello", "2026-01-01", "not an ICD-10-CM code"},
	}
	for _, tc := range tests {
		got := checkDiagnosis(tc.code, day(tc.dos))
		if (tc.wantErr == "") != (got == "") || !strings.Contains(got, tc.wantErr) {
			t.Errorf("checkDiagnosis(%s, %s) = %q, want %q", tc.code, tc.dos, got, tc.wantErr)
		}
	}
}

func TestFindService(t *testing.T) {
	for in, want := range map[string]string{
		"medically-tailored-meals": "cs-medically-tailored-meals",
		"Medically Tailored Meals": "cs-medically-tailored-meals",
		"RECUPERATIVE CARE":        "cs-recuperative-care",
		"Sobering Centers":         "cs-sobering-centers",
		"Transitional Rent":        "cs-transitional-rent",
		"Enhanced Care Management": "ecm",
		"health navigation":        "chw-health-navigation",
		"rocket rides":             "",
		"":                         "",
	} {
		sv, ok := findService(in)
		if ok != (want != "") || sv.code != want {
			t.Errorf("findService(%q) = %q, %v; want %q", in, sv.code, ok, want)
		}
	}
}

func TestReadCSV_Cells(t *testing.T) {
	csv := "\ufeffscreening_id,member_cin,instrument,screening_date,answers\n" +
		"S-1, 91234567A ,prapare,2026-01-02,\"93031-3=LA30125-1; 93031-3=LA30126-9;67875-5=LA17956-6\"\n"
	rows, err := ReadCSV("screening", strings.NewReader(csv), 0)
	if err != nil {
		t.Fatal(err)
	}
	f := rows[0].Fields
	if f["member_cin"] != "91234567A" {
		t.Errorf("cells are not trimmed: %q", f["member_cin"])
	}
	answers := f["answers"].(map[string]any)
	if l, ok := answers["93031-3"].([]any); !ok || len(l) != 2 || answers["67875-5"] != "LA17956-6" {
		t.Errorf("answers = %#v", answers)
	}
	if _, ok := f["screening_id"]; !ok {
		t.Error("the BOM-prefixed first column was lost")
	}
	// A list column splits on ';' and an integer column becomes a number.
	chw := "encounter_id,member_cin,chw_id,supervising_npi,billing_npi,encounter_date,modality,service_type,needs_addressed,minutes\n" +
		"E1,91234567A,c1,1122334455,1543210987,2026-01-02,phone,health-education,Z59.41;Z59.82,40\n"
	rows, err = ReadCSV("chw-encounter", strings.NewReader(chw), 0)
	if err != nil {
		t.Fatal(err)
	}
	results, _ := Convert("chw-encounter", rows, Options{})
	if len(results[0].Errors) > 0 {
		t.Fatalf("row errors: %v", results[0].Errors)
	}
	if got := rows[0].Fields["needs_addressed"].([]any); len(got) != 2 {
		t.Errorf("needs_addressed = %#v", got)
	}
}

func TestConvert_FutureDateRefused(t *testing.T) {
	rows, err := ReadJSON("dhcs-mif", strings.NewReader(`{"plan_id":"P","reporting_period":"2026-01","member_cin":"91234567A",
		"member_given_name":"A","member_family_name":"B","member_birth_date":"1980-01-01","member_sex":"male",
		"population_of_focus":["2"],"ecm_provider_npi":"1333444556","assignment_date":"2030-01-01"}`), 0)
	if err != nil {
		t.Fatal(err)
	}
	results, _ := Convert("dhcs-mif", rows, Options{Today: time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)})
	if len(results[0].Errors) != 1 || results[0].Errors[0].Field != "assignment_date" || !strings.Contains(results[0].Errors[0].Message, "future") {
		t.Fatalf("errors = %v", results[0].Errors)
	}
}

// TestConvert_Deterministic: the same input gives the same Bundle, byte for byte.
func TestConvert_Deterministic(t *testing.T) {
	in := `[{"referral_id":"R1","referral_date":"2026-01-02","member_cin":"91234567A","member_given_name":"A","member_family_name":"B",
		"member_birth_date":"1980-01-01","member_sex":"male","program":"chw","service_code":"health-education","referring_npi":"1234567893",
		"receiving_org":"cbo-a","diagnosis_codes":["Z59.41"]}]`
	var first string
	for i := range 3 {
		rows, _ := ReadJSON("referral", strings.NewReader(in), 0)
		res, _ := Convert("referral", rows, Options{})
		if res[0].Bundle == nil {
			t.Fatalf("errors: %v", res[0].Errors)
		}
		got := string(res[0].Bundle.Transaction())
		if i == 0 {
			first = got
		} else if got != first {
			t.Fatal("two conversions of the same row differ")
		}
	}
}

func TestScreening_NumericAnswerAndUnknownMember(t *testing.T) {
	rows, err := ReadJSON("screening", strings.NewReader(`{"member_cin":"91234567A","instrument":"prapare","screening_date":"2026-01-02",
		"answers":{"63512-8":3,"67875-5":"LA17956-6"}}`), 0)
	if err != nil {
		t.Fatal(err)
	}
	res, _ := Convert("screening", rows, Options{})
	if res[0].Bundle == nil {
		t.Fatalf("errors: %v", res[0].Errors)
	}
	tx := string(res[0].Bundle.Transaction())
	if !strings.Contains(tx, `"valueInteger": 3`) {
		t.Errorf("the household size is not an integer answer:\n%s", tx)
	}
	// No demographics: the member is referred to by CIN, not created.
	if strings.Contains(tx, `"url": "Patient"`) || !strings.Contains(tx, `"reference": "Patient?identifier=`) {
		t.Errorf("a screening without demographics created a Patient or did not refer by CIN")
	}
}

// BenchmarkReferralChunk converts 100 referral rows and renders them as one transaction, as
// the importer does per chunk.
func BenchmarkReferralChunk(b *testing.B) {
	var sb strings.Builder
	sb.WriteString("referral_id,referral_date,member_cin,member_given_name,member_family_name,member_birth_date,member_sex,plan_id,program,service_code,diagnosis_codes,referring_npi,receiving_org,consent_given,consent_date\n")
	for i := range 100 {
		fmt.Fprintf(&sb, "R-%d,2026-01-05,%08dA,G,F,1970-01-01,female,P,community-supports,housing-deposits,Z59.41;Z59.01,1234567893,1987654328,yes,2026-01-02\n", i, 10000000+i)
	}
	csv := sb.String()
	b.ResetTimer()
	for range b.N {
		rows, err := ReadCSV("referral", strings.NewReader(csv), 0)
		if err != nil {
			b.Fatal(err)
		}
		res, _ := Convert("referral", rows, Options{})
		all := NewBundle()
		for _, r := range res {
			all.Merge(r.Bundle)
		}
		_ = all.Transaction()
	}
}
