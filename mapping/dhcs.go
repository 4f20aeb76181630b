package mapping

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/calaimfhir/calaimfhir/profiles"
)

// The DHCS files a plan produces from what is stored: the Return Transmission File (RTF, with
// the closed-loop referral columns required since 7/2025) and the Outreach Tracker File (OTF).
// Columns follow the domain brief; DHCS's own column headers and code values are not public in
// machine-readable form here, so the names below are this project's and the status values are
// UNVERIFIED mappings of the Task workflow (README "DHCS files").

// Dataset is a set of stored resources by "Type/id", as the exports read them.
type Dataset struct {
	byRef map[string]map[string]any
	order []string
}

// NewDataset returns an empty Dataset.
func NewDataset() *Dataset { return &Dataset{byRef: map[string]map[string]any{}} }

// Add puts a resource (with resourceType and id) in the set.
func (d *Dataset) Add(res map[string]any) {
	typ, _ := res["resourceType"].(string)
	id, _ := res["id"].(string)
	if typ == "" || id == "" {
		return
	}
	key := typ + "/" + id
	if _, ok := d.byRef[key]; !ok {
		d.order = append(d.order, key)
	}
	d.byRef[key] = res
}

func (d *Dataset) get(reference any) map[string]any {
	m, _ := reference.(map[string]any)
	s, _ := m["reference"].(string)
	return d.byRef[s]
}

func (d *Dataset) all(typ string) []map[string]any {
	var out []map[string]any
	for _, k := range d.order {
		if strings.HasPrefix(k, typ+"/") {
			out = append(out, d.byRef[k])
		}
	}
	return out
}

// RTFColumns are the Return Transmission File's columns.
var RTFColumns = []string{
	"payer_id", "payer_name", "member_cin", "member_last_name", "member_first_name", "member_birth_date",
	"address_line", "city", "zip", "homeless_indicator", "phone", "pof_indicator", "populations_of_focus",
	"program", "service_code", "ecm_status", "ecm_enrollment_start_date", "ecm_enrollment_end_date",
	"most_recent_encounter_date", "encounter_modality", "discontinuation_date", "discontinuation_reason",
	"provider_name", "provider_npi", "referral_id", "referral_date", "referral_status", "referral_status_date",
	"referral_closure_reason", "rtf_production_date", "mif_reporting_period",
}

// OTFColumns are the Outreach Tracker File's columns.
var OTFColumns = []string{
	"mcp_id", "mcp_name", "provider_name", "provider_npi", "provider_tin", "member_last_name", "member_first_name",
	"member_cin", "provider_type", "outreach_date", "outreach_method", "outreach_successful", "time_spent_minutes",
}

// referralStatus maps a Task's status to the closed-loop referral status reported to DHCS,
// unless the Task carries a businessStatus from profiles.ReferralStatusSystem, which wins.
var referralStatus = map[string]string{
	"draft": "pending", "requested": "pending", "received": "pending", "accepted": "accepted", "ready": "accepted",
	"in-progress": "accepted", "on-hold": "accepted", "rejected": "declined", "cancelled": "closed",
	"failed": "closed", "completed": "closed", "entered-in-error": "closed",
}

var closedStatuses = []string{"rejected", "cancelled", "failed", "completed", "entered-in-error"}

// periodBounds is the first and last day of a YYYY-MM period.
func periodBounds(period string) (string, string, error) {
	start, err := time.Parse("2006-01", period)
	if err != nil {
		return "", "", fmt.Errorf("period %q is not YYYY-MM", period)
	}
	return start.Format(time.DateOnly), start.AddDate(0, 1, -1).Format(time.DateOnly), nil
}

// member is a plan's member as the files show them.
type member struct {
	patient  map[string]any
	coverage map[string]any
	payer    map[string]any
}

// planMembers lists the Patients whose Coverage names the plan (plan_id) as payor.
func (d *Dataset) planMembers(planID string) map[string]member {
	out := map[string]member{}
	for _, cov := range d.all("Coverage") {
		for _, p := range asList(cov["payor"]) {
			payer := d.get(p)
			if payer == nil || identifierValue(payer, PlanIDSystem) != planID {
				continue
			}
			if pat := d.get(cov["beneficiary"]); pat != nil {
				out["Patient/"+str(pat["id"])] = member{patient: pat, coverage: cov, payer: payer}
			}
		}
	}
	return out
}

// ReturnTransmissionFile writes the RTF of a plan for a reporting period (YYYY-MM): a row per
// referral Task of a plan member that was open during the period or changed in it.
func ReturnTransmissionFile(d *Dataset, planID, period string, produced time.Time) ([]byte, error) {
	first, last, err := periodBounds(period)
	if err != nil {
		return nil, err
	}
	members := d.planMembers(planID)
	encounters := d.latestEncounters(first, last)
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	w.Write(RTFColumns)
	for _, task := range d.all("Task") {
		m, ok := members[refString(task["for"])]
		if !ok {
			continue
		}
		sr := d.get(task["focus"])
		if sr == nil {
			continue
		}
		status := str(task["status"])
		authored := day(str(task["authoredOn"]))
		changed := day(str(task["lastModified"]))
		if changed == "" {
			changed = day(str(mapOf(task["meta"])["lastUpdated"]))
		}
		if authored == "" || authored > last || (slices.Contains(closedStatuses, status) && changed != "" && changed < first) {
			continue
		}
		row := map[string]string{
			"payer_id": planID, "payer_name": str(m.payer["name"]), "rtf_production_date": produced.Format(time.DateOnly),
			"referral_date": authored, "referral_status_date": changed,
		}
		memberColumns(row, m.patient)
		program, pofs := "", []string{}
		for _, e := range asList(sr["extension"]) {
			em := mapOf(e)
			code := str(mapOf(em["valueCoding"])["code"])
			if code == "" {
				code = firstCode(em["valueCodeableConcept"], "")
			}
			switch str(em["url"]) {
			case profiles.ExtProgram:
				program = code
			case profiles.ExtPopulationOfFocus:
				pofs = append(pofs, code)
			}
		}
		row["program"] = program
		row["service_code"] = firstCode(sr["code"], profiles.ServiceSystem)
		row["populations_of_focus"] = strings.Join(pofs, ";")
		row["pof_indicator"] = yn(len(pofs) > 0)
		row["homeless_indicator"] = yn(slices.Contains(pofs, "1a") || slices.Contains(pofs, "1b") || hasCategory(sr, "homelessness"))
		row["referral_id"] = identifierValue(sr, profiles.ExternalReferralIDSystem)
		if row["referral_id"] == "" {
			row["referral_id"] = identifierValue(sr, SourceKeySystem)
		}
		row["referral_status"] = referralStatus[status]
		if bs := firstCode(task["businessStatus"], profiles.ReferralStatusSystem); bs != "" {
			row["referral_status"] = bs
		}
		if slices.Contains(closedStatuses, status) {
			reason := firstCode(task["statusReason"], profiles.ClosureReasonSystem)
			if reason == "" {
				reason = str(mapOf(task["statusReason"])["text"])
			}
			if reason == "" {
				reason = status
			}
			row["referral_closure_reason"] = reason
		}
		if program == "ecm" {
			switch status {
			case "accepted", "in-progress", "on-hold":
				row["ecm_status"] = "enrolled"
			case "completed", "failed", "cancelled":
				row["ecm_status"] = "disenrolled"
				row["discontinuation_date"] = changed
				row["discontinuation_reason"] = row["referral_closure_reason"]
			case "rejected":
				row["ecm_status"] = "declined"
			default:
				row["ecm_status"] = "assigned"
			}
			exec := mapOf(task["executionPeriod"])
			row["ecm_enrollment_start_date"] = day(str(exec["start"]))
			row["ecm_enrollment_end_date"] = day(str(exec["end"]))
		}
		if owner := d.get(task["owner"]); owner != nil {
			row["provider_name"] = str(owner["name"])
			row["provider_npi"] = identifierValue(owner, profiles.NPISystem)
		}
		if enc := encounters[refString(task["for"])]; enc != nil {
			row["most_recent_encounter_date"] = day(str(mapOf(enc["period"])["start"]))
			row["encounter_modality"] = modality(enc)
		}
		for _, in := range asList(task["input"]) {
			if str(mapOf(mapOf(in)["type"])["text"]) == "MIF reporting period" {
				row["mif_reporting_period"] = str(mapOf(in)["valueString"])
			}
		}
		w.Write(values(RTFColumns, row))
	}
	w.Flush()
	return buf.Bytes(), w.Error()
}

// OutreachTrackerFile writes the OTF of a plan for a period: a row per contact (Encounter)
// with a plan member during the period; finished encounters count as successful outreach.
func OutreachTrackerFile(d *Dataset, planID, period string) ([]byte, error) {
	first, last, err := periodBounds(period)
	if err != nil {
		return nil, err
	}
	members := d.planMembers(planID)
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	w.Write(OTFColumns)
	for _, enc := range d.all("Encounter") {
		m, ok := members[refString(enc["subject"])]
		if !ok {
			continue
		}
		date := day(str(mapOf(enc["period"])["start"]))
		if date == "" || date < first || date > last {
			continue
		}
		row := map[string]string{"mcp_id": planID, "mcp_name": str(m.payer["name"]), "outreach_date": date,
			"outreach_method": modality(enc), "outreach_successful": yn(str(enc["status"]) == "finished")}
		memberColumns(row, m.patient)
		if org := d.get(enc["serviceProvider"]); org != nil {
			row["provider_name"] = str(org["name"])
			row["provider_npi"] = identifierValue(org, profiles.NPISystem)
		}
		row["provider_type"] = "ECM"
		if firstCode(firstOf(enc["type"]), profiles.CHWServiceTypeSystem) != "" {
			row["provider_type"] = "CHW"
		}
		if l := mapOf(enc["length"]); l["value"] != nil {
			row["time_spent_minutes"] = jsonScalar(l["value"])
		}
		w.Write(values(OTFColumns, row))
	}
	w.Flush()
	return buf.Bytes(), w.Error()
}

// latestEncounters is each member's most recent Encounter that starts in [first, last].
func (d *Dataset) latestEncounters(first, last string) map[string]map[string]any {
	out := map[string]map[string]any{}
	for _, enc := range d.all("Encounter") {
		start := day(str(mapOf(enc["period"])["start"]))
		if start == "" || start < first || start > last {
			continue
		}
		key := refString(enc["subject"])
		if prev := out[key]; prev == nil || day(str(mapOf(prev["period"])["start"])) <= start {
			out[key] = enc
		}
	}
	return out
}

func memberColumns(row map[string]string, p map[string]any) {
	row["member_cin"] = identifierValue(p, profiles.CINSystem)
	name := mapOf(firstOf(p["name"]))
	row["member_last_name"] = str(name["family"])
	var given []string
	for _, g := range asList(name["given"]) {
		given = append(given, str(g))
	}
	row["member_first_name"] = strings.Join(given, " ")
	row["member_birth_date"] = str(p["birthDate"])
	addr := mapOf(firstOf(p["address"]))
	var lines []string
	for _, l := range asList(addr["line"]) {
		lines = append(lines, str(l))
	}
	row["address_line"] = strings.Join(lines, ", ")
	row["city"] = str(addr["city"])
	row["zip"] = str(addr["postalCode"])
	row["phone"] = str(mapOf(firstOf(p["telecom"]))["value"])
}

// modality reads how a contact took place: the ModalitySystem type, else the class.
func modality(enc map[string]any) string {
	for _, t := range append([]any{enc["serviceType"]}, asList(enc["type"])...) {
		switch firstCode(t, ModalitySystem) {
		case "FACE":
			return "in-person"
		case "VIDEOCONF":
			return "video"
		case "PHONE":
			return "telephonic"
		}
	}
	if str(mapOf(enc["class"])["code"]) == "VR" {
		return "video"
	}
	return "in-person"
}

func values(cols []string, row map[string]string) []string {
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = row[c]
	}
	return out
}

func yn(b bool) string {
	if b {
		return "Y"
	}
	return "N"
}

func hasCategory(res map[string]any, code string) bool {
	for _, c := range asList(res["category"]) {
		for _, cd := range asList(mapOf(c)["coding"]) {
			if str(mapOf(cd)["code"]) == code {
				return true
			}
		}
	}
	return false
}

func identifierValue(res map[string]any, system string) string {
	for _, id := range asList(res["identifier"]) {
		if m := mapOf(id); str(m["system"]) == system {
			return str(m["value"])
		}
	}
	if m := mapOf(res["identifier"]); str(m["system"]) == system { // QuestionnaireResponse: one identifier
		return str(m["value"])
	}
	return ""
}

// firstCode is the code of the first coding with the system ("" system: any).
func firstCode(cc any, system string) string {
	for _, c := range asList(mapOf(cc)["coding"]) {
		m := mapOf(c)
		if system == "" || str(m["system"]) == system {
			return str(m["code"])
		}
	}
	return ""
}

func refString(v any) string { return str(mapOf(v)["reference"]) }

func day(s string) string {
	if len(s) >= 10 {
		return s[:10]
	}
	return s
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

func mapOf(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}

func firstOf(v any) any {
	if l := asList(v); len(l) > 0 {
		return l[0]
	}
	return nil
}
