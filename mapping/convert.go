package mapping

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/calaimfhir/calaimfhir/profiles"
)

// Options adjust a conversion.
type Options struct {
	// Requester is the organization sending the records ("Organization/id"), made the
	// requester of every Task: the server sets it to the caller's organization, which the
	// referral workflow requires of whoever creates a Task. Empty: the record's own referring
	// party (see each format).
	Requester string
	// Today, when set, refuses dates after it (a referral dated next year is a typo).
	Today time.Time
	// ReferOnly lists types the caller may not create (a CBO creates no Patient,
	// Organization or Coverage): resources of these types are not put in the Bundle but
	// referred to by a conditional reference on the same identifier, so they must already be
	// stored and visible to the caller (the row fails with 404 otherwise).
	ReferOnly map[string]bool
}

// Result is the conversion of one row: its entries, or what is wrong with it.
type Result struct {
	Row      int
	Bundle   *Bundle    // nil when Errors is not empty
	Errors   []RowError // the row is rejected when there is any
	Warnings []string   // the row is converted, but something was left out (said why)
	// Key names the row's main resource ("ServiceRequest", identifier value) for reports.
	Key string
}

// Convert checks and converts every row of a file of the given format. A row with errors has
// no Bundle; the others are independent of it.
func Convert(name string, rows []Row, opts Options) ([]Result, error) {
	f, err := getFormat(name)
	if err != nil {
		return nil, err
	}
	conv := converters[name]
	out := make([]Result, len(rows))
	for i, row := range rows {
		res := Result{Row: row.Num}
		if errs := f.validateSchema(row); len(errs) > 0 {
			res.Errors = errs
		} else {
			r := &record{row: row.Num, f: row.Fields, opts: opts}
			b := NewBundle()
			b.referOnly = opts.ReferOnly
			res.Key = conv(r, b)
			if len(r.errs) > 0 {
				res.Errors = r.errs
			} else {
				res.Bundle = b
				res.Warnings = r.warnings
			}
		}
		out[i] = res
	}
	return out, nil
}

var converters = map[string]func(r *record, b *Bundle) string{
	"referral":      convertReferral,
	"screening":     convertScreening,
	"chw-encounter": convertCHWEncounter,
	"dhcs-mif":      convertMIF,
}

// record reads the fields of one schema-valid row and collects the problems the Go checks find.
type record struct {
	recordDate string // the record's date (referral, encounter, assignment): Coverage known from then
	row        int
	f          map[string]any
	opts       Options
	errs       []RowError
	warnings   []string
}

func (r *record) fail(field, format string, args ...any) {
	r.errs = append(r.errs, RowError{Row: r.row, Field: field, Message: fmt.Sprintf(format, args...)})
}

func (r *record) warn(format string, args ...any) {
	r.warnings = append(r.warnings, fmt.Sprintf(format, args...))
}

func (r *record) str(name string) string {
	s, _ := r.f[name].(string)
	return strings.TrimSpace(s)
}

func (r *record) has(name string) bool {
	return r.str(name) != "" || r.f[name] != nil && r.f[name] != ""
}

func (r *record) list(name string) []string {
	var out []string
	switch v := r.f[name].(type) {
	case []any:
		for _, x := range v {
			if s, ok := x.(string); ok && strings.TrimSpace(s) != "" {
				out = append(out, strings.TrimSpace(s))
			}
		}
	case string:
		if v != "" {
			out = append(out, v)
		}
	}
	return out
}

func (r *record) int(name string, def int) int {
	switch v := r.f[name].(type) {
	case json.Number:
		n, err := v.Int64()
		if err == nil {
			return int(n)
		}
	case float64:
		return int(v)
	}
	return def
}

// date reads a YYYY-MM-DD field (the schema has checked its form and calendar validity) and
// refuses dates after Options.Today.
func (r *record) date(name string) (time.Time, bool) {
	s := r.str(name)
	if s == "" {
		return time.Time{}, false
	}
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		r.fail(name, "%q is not a date (YYYY-MM-DD)", s)
		return time.Time{}, false
	}
	if !r.opts.Today.IsZero() && t.After(r.opts.Today) {
		r.fail(name, "%s is in the future", s)
		return time.Time{}, false
	}
	return t, true
}

// npi reads an NPI field and checks its check digit.
func (r *record) npi(name string) string {
	s := r.str(name)
	if s != "" && !ValidNPI(s) {
		r.fail(name, "%s is not a valid NPI: its check digit (Luhn over 80840 + the first 9 digits) is wrong", s)
		return ""
	}
	return s
}

// diagnoses reads a list of ICD-10-CM codes and checks each on the date of service.
func (r *record) diagnoses(name string, dos time.Time) []string {
	codes := r.list(name)
	var ok []string
	seen := map[string]bool{}
	for _, c := range codes {
		c = strings.ToUpper(c)
		if seen[c] {
			continue
		}
		seen[c] = true
		if msg := checkDiagnosis(c, dos); msg != "" {
			r.fail(name, "%s", msg)
			continue
		}
		ok = append(ok, c)
	}
	return ok
}

// patient adds the member: a conditional create on the CIN when the record carries the
// member's demographics, otherwise a conditional reference to a Patient already stored with
// that CIN (the transaction then fails with 404 for a member not known here). It returns the
// reference to use.
func (r *record) patient(b *Bundle) string {
	cin := r.str("member_cin")
	if !r.has("member_family_name") && !r.has("member_birth_date") {
		q := url.Values{"identifier": {profiles.CINSystem + "|" + cin}}
		return "Patient?" + q.Encode()
	}
	p := map[string]any{
		"meta": meta(profiles.PatientProfile),
		"identifier": list(map[string]any{
			"use":    "usual",
			"type":   concept(coding("http://terminology.hl7.org/CodeSystem/v2-0203", "MA", "Patient Medicaid number")),
			"system": profiles.CINSystem,
			"value":  cin,
		}),
		"active": true,
	}
	name := map[string]any{"use": "official"}
	if v := r.str("member_family_name"); v != "" {
		name["family"] = v
	}
	if v := r.str("member_given_name"); v != "" {
		name["given"] = list(strings.Fields(v)...)
	}
	p["name"] = list(name)
	if v := r.str("member_sex"); v != "" {
		p["gender"] = v
	}
	if d, ok := r.date("member_birth_date"); ok {
		p["birthDate"] = d.Format(time.DateOnly)
	}
	if v := r.str("phone"); v != "" {
		p["telecom"] = list(map[string]any{"system": "phone", "value": v, "use": "home"})
	}
	addr := map[string]any{}
	if v := r.str("address_line"); v != "" {
		addr["line"] = list(v)
	}
	if v := r.str("city"); v != "" {
		addr["city"] = v
	}
	if v := r.str("zip"); v != "" {
		addr["postalCode"] = v
	}
	if len(addr) > 0 {
		addr["use"] = "home"
		addr["state"] = "CA"
		addr["country"] = "US"
		p["address"] = list(addr)
	}
	if v := r.str("language"); v != "" {
		p["communication"] = list(map[string]any{
			"language":  concept(coding("urn:ietf:bcp:47", v, "")),
			"preferred": true,
		})
	}
	return b.add("Patient", profiles.CINSystem, cin, p)
}

// practitioner adds a Practitioner identified by NPI; name is "Given Family" or empty.
func practitioner(b *Bundle, npi, name string) string {
	p := map[string]any{"identifier": ident(profiles.NPISystem, npi), "active": true}
	if name = strings.TrimSpace(name); name != "" {
		p["name"] = list(map[string]any{"text": name})
	}
	return b.add("Practitioner", profiles.NPISystem, npi, p)
}

// organization adds an Organization identified by NPI.
func organization(b *Bundle, npi, name string) string {
	o := map[string]any{"identifier": ident(profiles.NPISystem, npi), "active": true}
	if name = strings.TrimSpace(name); name != "" {
		o["name"] = name
	}
	return b.add("Organization", profiles.NPISystem, npi, o)
}

// orgRef reads a field naming an organization: an NPI (conditional create) or an
// Organization id ("cbo-a" or "Organization/cbo-a", referred to as is).
func (r *record) orgRef(b *Bundle, field string) string {
	v := r.str(field)
	if v == "" {
		return ""
	}
	if len(v) == 10 && strings.Trim(v, "0123456789") == "" {
		if !ValidNPI(v) {
			r.fail(field, "%s is not a valid NPI: its check digit (Luhn over 80840 + the first 9 digits) is wrong", v)
			return ""
		}
		return organization(b, v, "")
	}
	return "Organization/" + strings.TrimPrefix(v, "Organization/")
}

// plan adds the member's managed care plan (Organization) and Coverage; returns the Coverage
// reference.
func (r *record) plan(b *Bundle, patientRef, cin string) string {
	planID := r.str("plan_id")
	if planID == "" {
		return ""
	}
	org := map[string]any{
		"identifier": ident(PlanIDSystem, planID),
		"active":     true,
		"type":       list(concept(coding("http://terminology.hl7.org/CodeSystem/organization-type", "pay", "Payer"))),
	}
	if v := r.str("plan_name"); v != "" {
		org["name"] = v
	} else {
		org["name"] = planID
	}
	planRef := b.add("Organization", PlanIDSystem, planID, org)
	key := "coverage/" + planID + "/" + cin
	cov := map[string]any{
		"meta":         meta(profiles.CoverageProfile),
		"identifier":   list(map[string]any{"system": SourceKeySystem, "value": key}, map[string]any{"system": profiles.CINSystem, "value": cin}),
		"status":       "active",
		"type":         concept(coding("https://nahdo.org/sopt", "2", "MEDICAID")),
		"period":       map[string]any{"start": r.recordDate},
		"subscriberId": cin,
		"beneficiary":  ref(patientRef),
		"relationship": concept(coding("http://terminology.hl7.org/CodeSystem/subscriber-relationship", "self", "Self")),
		"payor":        list(ref(planRef)),
		"class": list(map[string]any{
			"type":  concept(coding("http://terminology.hl7.org/CodeSystem/coverage-class", "plan", "Plan")),
			"value": planID,
			"name":  "Medi-Cal managed care",
		}),
	}
	return b.add("Coverage", SourceKeySystem, key, cov)
}

// sdohCondition adds a Condition for an ICD-10-CM code (and an optional SNOMED CT concept),
// identified by key; category is problem-list-item, health-concern or encounter-diagnosis.
func sdohCondition(b *Bundle, key, patientRef, icd, snomed, snomedDisplay, category, recorded string, evidence []string) string {
	catSystem := "http://terminology.hl7.org/CodeSystem/condition-category"
	if category == "health-concern" {
		catSystem = "http://hl7.org/fhir/us/core/CodeSystem/condition-category" // not in the R4 code system
	}
	cats := []any{concept(coding(catSystem, category, categoryDisplay[category]))}
	if cat := categoryOf(icd); cat != "" {
		cats = append(cats, concept(coding(profiles.SDOHCCCategorySystem, cat, sdohCategoryDisplay[cat])))
	}
	codings := []map[string]any{}
	if snomed != "" {
		codings = append(codings, coding(profiles.SNOMEDSystem, snomed, snomedDisplay))
	}
	codings = append(codings, coding(profiles.ICD10CMSystem, icd, diagnosisDisplay(icd)))
	c := map[string]any{
		"identifier":         ident(SourceKeySystem, key),
		"clinicalStatus":     concept(coding("http://terminology.hl7.org/CodeSystem/condition-clinical", "active", "Active")),
		"verificationStatus": concept(coding("http://terminology.hl7.org/CodeSystem/condition-ver-status", "confirmed", "Confirmed")),
		"category":           cats,
		"code":               concept(codings...),
		"subject":            ref(patientRef),
	}
	if categoryOf(icd) != "" {
		c["meta"] = meta(profiles.ConditionProfile)
	}
	if recorded != "" {
		c["recordedDate"] = recorded
		c["onsetDateTime"] = recorded
	}
	if len(evidence) > 0 {
		var details []any
		for _, e := range evidence {
			details = append(details, ref(e))
		}
		c["evidence"] = list(map[string]any{"detail": details})
	}
	return b.add("Condition", SourceKeySystem, key, c)
}

var categoryDisplay = map[string]string{
	"problem-list-item":   "Problem List Item",
	"health-concern":      "Health Concern",
	"encounter-diagnosis": "Encounter Diagnosis",
}

func itoa(n int) string { return strconv.Itoa(n) }
