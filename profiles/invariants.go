package profiles

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Invariants that FHIRPath would state. google/fhir v0.7.4 has no FHIRPath evaluator, so each
// ElementDefinition.constraint of the CalAIM definitions names (by key) one of the Go
// functions below; the constraint's expression keeps the FHIRPath for readers, and loading
// fails if a key has no function. A function reports the findings at the node it is given;
// a finding may name a more precise location.

type finding struct {
	at     string // FHIRPath location; the constrained node's when empty
	detail string // appended to the constraint's human text
}

type invariant func(v *run, n node) []finding

var zeroTime time.Time

var invariants = map[string]invariant{
	"calaim-npi-1":  npiLuhn,
	"calaim-sr-1":   srPopulationOfFocus,
	"calaim-sr-2":   srReason,
	"calaim-task-1": taskStatusReason,
	"calaim-task-2": taskOutput,
	"calaim-task-3": taskClosureReason,
	"calaim-cons-1": consentSource,
	"calaim-cons-2": consentPart2Label,
	"calaim-clm-1":  claimSupervisor,
	"calaim-clm-2":  claimDiagnosisPointers,
	"calaim-clm-3":  claimItemCatalog,
	"calaim-clm-4":  claimZCodeDates,
	"calaim-enc-1":  encounterFinishedEnd,
	"calaim-cond-1": conditionCodeSystem,
	"calaim-obs-1":  observationValue,
	"calaim-obs-2":  observationHungerAnswer,
}

func obj(v any) map[string]any { m, _ := v.(map[string]any); return m }

func list(v any) []any {
	switch x := v.(type) {
	case nil:
		return nil
	case []any:
		return x
	}
	return []any{v}
}

func str(m map[string]any, k string) string { s, _ := m[k].(string); return s }

func hasCode(v any, system, code string) bool {
	for _, c := range codesOf(v) {
		if c.system == system && (code == "" || c.code == code) {
			return true
		}
	}
	return false
}

// ValidNPI reports whether s is a 10-digit NPI whose last digit is the Luhn check digit
// computed over the prefix 80840 and the first nine digits (CMS NPI check digit rule).
func ValidNPI(s string) bool {
	if len(s) != 10 {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	digits := "80840" + s[:9]
	sum := 0
	for i := len(digits) - 1; i >= 0; i-- {
		d := int(digits[i] - '0')
		if (len(digits)-1-i)%2 == 0 { // double every second digit from the right of the payload
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	check := (10 - sum%10) % 10
	return int(s[9]-'0') == check
}

// npiLuhn: an Identifier with the NPI system has a valid NPI value.
func npiLuhn(_ *run, n node) []finding {
	m := obj(n.v)
	if str(m, "system") != NPISystem {
		return nil
	}
	if val := str(m, "value"); !ValidNPI(val) {
		return []finding{{at: n.path + ".value", detail: fmt.Sprintf("%q is not a valid NPI", val)}}
	}
	return nil
}

func extensionValues(m map[string]any, url string) []any {
	var out []any
	for _, x := range list(m["extension"]) {
		xm := obj(x)
		if str(xm, "url") != url {
			continue
		}
		for k, val := range xm {
			if strings.HasPrefix(k, "value") {
				out = append(out, val)
			}
		}
	}
	return out
}

// srPopulationOfFocus: an ECM referral names the Population(s) of Focus.
func srPopulationOfFocus(_ *run, n node) []finding {
	m := obj(n.v)
	ecm := false
	for _, val := range extensionValues(m, ExtProgram) {
		if hasCode(val, ProgramSystem, "ecm") {
			ecm = true
		}
	}
	if ecm && len(extensionValues(m, ExtPopulationOfFocus)) == 0 {
		return []finding{{at: n.path + ".extension"}}
	}
	return nil
}

// srReason: a referral gives its reason as codes or as a reference to a Condition/Observation.
func srReason(_ *run, n node) []finding {
	m := obj(n.v)
	if len(list(m["reasonCode"])) == 0 && len(list(m["reasonReference"])) == 0 {
		return []finding{{at: n.path + ".reasonCode"}}
	}
	return nil
}

func taskStatusReason(_ *run, n node) []finding {
	m := obj(n.v)
	switch str(m, "status") {
	case "rejected", "cancelled", "failed":
		if m["statusReason"] == nil {
			return []finding{{at: n.path + ".statusReason", detail: "status is " + str(m, "status")}}
		}
	}
	return nil
}

func taskOutput(v *run, n node) []finding {
	m := obj(n.v)
	if str(m, "status") != "completed" {
		return nil
	}
	for _, o := range list(m["output"]) {
		if ref := obj(obj(o)["valueReference"]); ref != nil && referenceType(v.doc, ref) == "Procedure" {
			return nil
		}
	}
	return []finding{{at: n.path + ".output"}}
}

func taskClosureReason(_ *run, n node) []finding {
	m := obj(n.v)
	if !hasCode(m["businessStatus"], ReferralStatusSystem, "closed") {
		return nil
	}
	if !hasCode(m["statusReason"], ClosureReasonSystem, "") {
		return []finding{{at: n.path + ".statusReason"}}
	}
	return nil
}

func consentSource(_ *run, n node) []finding {
	m := obj(n.v)
	for k := range m {
		if strings.HasPrefix(k, "source") {
			return nil
		}
	}
	return []finding{{at: n.path}}
}

// provisions walks a provision and its nested provisions.
func provisions(p map[string]any, path string, fn func(map[string]any, string)) {
	if p == nil {
		return
	}
	fn(p, path)
	for i, sub := range list(p["provision"]) {
		provisions(obj(sub), path+".provision["+strconv.Itoa(i)+"]", fn)
	}
}

func consentPart2Label(_ *run, n node) []finding {
	m := obj(n.v)
	part2 := false
	for _, r := range list(m["policyRule"]) {
		if hasCode(r, "http://terminology.hl7.org/CodeSystem/v3-ActCode", "42CFRPart2") {
			part2 = true
		}
	}
	if !part2 {
		return nil
	}
	found := false
	provisions(obj(m["provision"]), n.path+".provision", func(p map[string]any, _ string) {
		for _, l := range list(p["securityLabel"]) {
			if hasCode(l, "http://terminology.hl7.org/CodeSystem/v3-ActCode", "ETH") {
				found = true
			}
		}
	})
	if !found {
		return []finding{{at: n.path + ".provision"}}
	}
	return nil
}

// chwCodes are the billing codes of the CHW benefit.
var chwCodes = map[string]bool{"98960": true, "98961": true, "98962": true, "G0019": true, "G0022": true}

func claimSupervisor(_ *run, n node) []finding {
	m := obj(n.v)
	chw := false
	for _, it := range list(m["item"]) {
		for _, c := range codesOf(obj(it)["productOrService"]) {
			if (c.system == CPTSystem || c.system == HCPCSSystem) && chwCodes[c.code] {
				chw = true
			}
		}
	}
	if !chw {
		return nil
	}
	for _, ct := range list(m["careTeam"]) {
		ctm := obj(ct)
		if hasCode(ctm["role"], "http://terminology.hl7.org/CodeSystem/claimcareteamrole", "supervisor") {
			for _, id := range list(obj(ctm["provider"])["identifier"]) {
				if str(obj(id), "system") == NPISystem {
					return nil
				}
			}
		}
	}
	return []finding{{at: n.path + ".careTeam", detail: "CHW services need a supervising provider with an NPI"}}
}

func claimDiagnosisPointers(v *run, n node) []finding {
	seqs := map[string]bool{}
	for _, d := range list(v.doc["diagnosis"]) {
		seqs[fmt.Sprint(obj(d)["sequence"])] = true
	}
	var out []finding
	for i, p := range list(obj(n.v)["diagnosisSequence"]) {
		if !seqs[fmt.Sprint(p)] {
			out = append(out, finding{at: fmt.Sprintf("%s.diagnosisSequence[%d]", n.path, i), detail: fmt.Sprintf("no diagnosis with sequence %v", p)})
		}
	}
	return out
}

func serviceDate(item map[string]any) time.Time {
	s := str(item, "servicedDate")
	if s == "" {
		s = str(obj(item["servicedPeriod"]), "start")
	}
	if len(s) < 10 {
		return time.Time{}
	}
	t, err := time.Parse("2006-01-02", s[:10])
	if err != nil {
		return time.Time{}
	}
	return t
}

func claimItemCatalog(v *run, n node) []finding {
	item := obj(n.v)
	var mods []string
	for _, md := range list(item["modifier"]) {
		for _, c := range codesOf(md) {
			mods = append(mods, c.code)
		}
	}
	date := serviceDate(item)
	var out []finding
	for _, c := range codesOf(item["productOrService"]) {
		if c.system != CPTSystem && c.system != HCPCSSystem {
			continue
		}
		svcs := v.e.terms.ServicesFor(c.system, c.code, mods)
		if len(svcs) == 0 {
			out = append(out, finding{at: n.path + ".productOrService", detail: fmt.Sprintf("%s with modifiers [%s] is not a CalAIM service billing", c.code, strings.Join(mods, ", "))})
			continue
		}
		if active, known, why := v.e.terms.ActiveOn(c.system, c.code, date); known && !active {
			out = append(out, finding{at: n.path + ".productOrService", detail: fmt.Sprintf("%s is not billable on %s (%s)", c.code, date.Format("2006-01-02"), why)})
			continue
		}
		startOK := false
		for _, s := range svcs {
			if s.Start.IsZero() || date.IsZero() || !date.Before(s.Start) {
				startOK = true
			}
		}
		if !startOK {
			out = append(out, finding{at: n.path + ".productOrService", detail: fmt.Sprintf("%s is billed for %s, which starts on %s", c.code, svcs[0].Display, svcs[0].Start.Format("2006-01-02"))})
		}
	}
	return out
}

func claimZCodeDates(v *run, n node) []finding {
	var dates []time.Time
	for _, it := range list(v.doc["item"]) {
		if d := serviceDate(obj(it)); !d.IsZero() {
			dates = append(dates, d)
		}
	}
	var out []finding
	for i, d := range list(v.doc["diagnosis"]) {
		cc := obj(d)["diagnosisCodeableConcept"]
		for _, c := range codesOf(cc) {
			if c.system != ICD10CMSystem {
				continue
			}
			for _, date := range dates {
				if ok, known, why := v.e.terms.ZCodeBillable(c.code, date); known && !ok {
					out = append(out, finding{at: fmt.Sprintf("%s.diagnosis[%d].diagnosisCodeableConcept", n.path, i),
						detail: fmt.Sprintf("%s is not billable on %s (%s)", c.code, date.Format("2006-01-02"), why)})
					break
				}
			}
		}
	}
	return out
}

func encounterFinishedEnd(_ *run, n node) []finding {
	m := obj(n.v)
	if str(m, "status") == "finished" && str(obj(m["period"]), "end") == "" {
		return []finding{{at: n.path + ".period"}}
	}
	return nil
}

func conditionCodeSystem(_ *run, n node) []finding {
	code := obj(n.v)["code"]
	if hasCode(code, ICD10CMSystem, "") || hasCode(code, SNOMEDSystem, "") {
		return nil
	}
	return []finding{{at: n.path + ".code"}}
}

func observationValue(_ *run, n node) []finding {
	m := obj(n.v)
	for k := range m {
		if strings.HasPrefix(k, "value") || k == "hasMember" || k == "dataAbsentReason" {
			return nil
		}
	}
	return []finding{{at: n.path}}
}

// hungerQuestions are the Hunger Vital Sign questions whose answers come from one list.
var hungerQuestions = map[string]bool{"88122-7": true, "88123-5": true}

func observationHungerAnswer(v *run, n node) []finding {
	m := obj(n.v)
	asked := false
	for _, c := range codesOf(m["code"]) {
		if c.system == LOINCSystem && hungerQuestions[c.code] {
			asked = true
		}
	}
	answer, ok := m["valueCodeableConcept"]
	if !asked || !ok {
		return nil
	}
	for _, c := range codesOf(answer) {
		if res, err := v.e.terms.ValidateCode(Base+"/ValueSet/hunger-vital-sign-answers", c.system, c.code, zeroTime); err == nil && res.Valid {
			return nil
		}
	}
	return []finding{{at: n.path + ".valueCodeableConcept"}}
}
