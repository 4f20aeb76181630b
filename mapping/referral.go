package mapping

import (
	"strings"
	"time"

	"github.com/calaimfhir/calaimfhir/profiles"
)

// convertReferral maps one referral form to Patient, Coverage (with plan_id), Practitioner
// (referring_npi), Organization (receiving_org and referring_org given as NPIs), a Condition
// per diagnosis, a Consent (consent_given yes), the ServiceRequest and its Task (SDOHCC
// TaskForReferralManagement, status requested, owner the receiving organization).
//
// Identity: the ServiceRequest and Task carry referral_id (profiles.ExternalReferralIDSystem)
// and are created only if no resource of their type has it already; Conditions and the
// Consent are keyed on referral_id too (SourceKeySystem).
func convertReferral(r *record, b *Bundle) string {
	rid := r.str("referral_id")
	cin := r.str("member_cin")
	authored, okDate := r.date("referral_date")
	if birth, ok := r.date("member_birth_date"); ok && okDate && birth.After(authored) {
		r.fail("member_birth_date", "%s is after the referral date %s", birth.Format(time.DateOnly), authored.Format(time.DateOnly))
	}
	program := r.str("program")
	svc, ok := findService(r.str("service_code"))
	if !ok {
		r.fail("service_code", "%q is not a CalAIM service code or name (see the README's service table)", r.str("service_code"))
	} else if svc.program != program {
		r.fail("service_code", "%s is a %s service, not %s", svc.code, svc.program, program)
	}
	var dx []string
	if okDate {
		dx = r.diagnoses("diagnosis_codes", authored)
	}
	referringNPI := r.npi("referring_npi")
	consentDate, consentOK := time.Time{}, false
	if r.str("consent_given") == "yes" {
		consentDate, consentOK = r.date("consent_date")
		if consentOK && okDate && consentDate.After(authored) {
			r.fail("consent_date", "%s is after the referral date %s: consent must come first", consentDate.Format(time.DateOnly), authored.Format(time.DateOnly))
		}
	}
	owner := r.orgRef(b, "receiving_org")
	if len(r.errs) > 0 || !okDate || referringNPI == "" {
		return rid
	}
	day := authored.Format(time.DateOnly)
	r.recordDate = day

	patient := r.patient(b)
	r.plan(b, patient, cin)
	prac := practitioner(b, referringNPI, r.str("referring_name"))
	requesterOrg := ""
	if v := r.str("referring_org"); v != "" {
		if len(v) == 10 && strings.Trim(v, "0123456789") == "" || strings.HasPrefix(v, "Organization/") {
			requesterOrg = r.orgRef(b, "referring_org")
			if requesterOrg == "" {
				return rid
			}
		}
	}

	var reasonRefs, reasonCodes []any
	for _, code := range dx {
		c := sdohCondition(b, "referral/"+rid+"/condition/"+code, patient, code, "", "", "health-concern", day, nil)
		reasonRefs = append(reasonRefs, ref(c))
		reasonCodes = append(reasonCodes, concept(coding(profiles.ICD10CMSystem, code, diagnosisDisplay(code))))
	}

	var consentRef string
	if consentOK {
		consentRef = referralConsent(r, b, rid, patient, owner, consentDate)
	}

	priority := "routine"
	if r.str("priority") == "expedited" {
		priority = "urgent"
	}
	sr := map[string]any{
		"meta":       meta(profiles.ServiceRequestProfile),
		"identifier": ident(profiles.ExternalReferralIDSystem, rid),
		"extension": list(map[string]any{
			"url":         profiles.ExtProgram,
			"valueCoding": coding(profiles.ProgramSystem, program, programDisplay[program]),
		}),
		"status":     "active",
		"intent":     "order",
		"priority":   priority,
		"category":   list(concept(coding(profiles.SDOHCCCategorySystem, svc.category, sdohCategoryDisplay[svc.category]))),
		"code":       serviceConcept(svc),
		"subject":    ref(patient),
		"authoredOn": day,
		"requester":  requesterRef(prac, r.str("referring_name"), r.str("referring_org")),
		"performer":  list(ref(owner)),
	}
	for _, pof := range r.list("population_of_focus") {
		sr["extension"] = append(sr["extension"].([]any), map[string]any{
			"url":         profiles.ExtPopulationOfFocus,
			"valueCoding": coding(profiles.PopulationOfFocusSystem, pof, populationsOfFocus[pof]),
		})
	}
	if len(reasonCodes) > 0 {
		sr["reasonCode"] = reasonCodes
		sr["reasonReference"] = reasonRefs
	}
	if consentRef != "" {
		sr["supportingInfo"] = list(ref(consentRef))
	}
	var notes []any
	if v := r.str("justification"); v != "" {
		notes = append(notes, map[string]any{"text": "Clinical justification: " + v})
	}
	if v := r.str("notes"); v != "" {
		notes = append(notes, map[string]any{"text": v})
	}
	if len(notes) > 0 {
		sr["note"] = notes
	}
	srRef := b.add("ServiceRequest", profiles.ExternalReferralIDSystem, rid, sr)

	taskRequester := r.opts.Requester
	if taskRequester == "" {
		taskRequester = requesterOrg
	}
	if taskRequester == "" {
		taskRequester = prac
	}
	task := map[string]any{
		"meta":       meta(profiles.TaskProfile),
		"identifier": ident(profiles.ExternalReferralIDSystem, rid),
		"status":     "requested",
		"intent":     "order",
		"priority":   priority,
		"code":       concept(coding("http://hl7.org/fhir/CodeSystem/task-code", "fulfill", "Fulfill the focal request")),
		"focus":      ref(srRef),
		"for":        ref(patient),
		"authoredOn": day,
		"requester":  ref(taskRequester),
		"owner":      ref(owner),
	}
	b.add("Task", profiles.ExternalReferralIDSystem, rid, task)
	return rid
}

func serviceConcept(svc service) map[string]any {
	codings := []map[string]any{coding(profiles.ServiceSystem, svc.code, svc.display)}
	return map[string]any{"coding": list(codings...), "text": svc.display}
}

func requesterRef(prac, name, org string) map[string]any {
	m := ref(prac)
	display := strings.TrimSpace(name)
	if org != "" && !(len(org) == 10 && strings.Trim(org, "0123456789") == "") && !strings.HasPrefix(org, "Organization/") {
		if display != "" {
			display += ", "
		}
		display += org
	}
	if display != "" {
		m["display"] = display
	}
	return m
}

// referralConsent is the member's authorization to share their information with the receiving
// organization for treatment and care management (CalAIM ASCMI form, SDOHCC Consent).
func referralConsent(r *record, b *Bundle, rid, patient, owner string, date time.Time) string {
	key := "referral/" + rid + "/consent"
	c := map[string]any{
		"meta":       meta(profiles.ConsentProfile),
		"identifier": ident(SourceKeySystem, key),
		"status":     "active",
		"scope":      concept(coding("http://terminology.hl7.org/CodeSystem/consentscope", "patient-privacy", "Privacy Consent")),
		"category": list(
			concept(coding("http://terminology.hl7.org/CodeSystem/v3-ActCode", "IDSCL", "information disclosure")),
			concept(coding(profiles.LOINCSystem, "59284-0", "Patient Consent")),
		),
		"patient":    ref(patient),
		"dateTime":   date.Format(time.DateOnly),
		"policyRule": concept(coding("http://terminology.hl7.org/CodeSystem/consentpolicycodes", "hipaa-auth", "HIPAA Authorization")),
		"provision": map[string]any{
			"type":   "permit",
			"period": map[string]any{"start": date.Format(time.DateOnly)},
			"actor": list(map[string]any{
				"role":      concept(coding("http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "IRCP", "information recipient")),
				"reference": ref(owner),
			}),
			"purpose": list(
				coding("http://terminology.hl7.org/CodeSystem/v3-ActReason", "TREAT", "treatment"),
				coding("http://terminology.hl7.org/CodeSystem/v3-ActReason", "CAREMGT", "care management"),
			),
		},
	}
	signer := r.str("consent_signer")
	if signer == "" {
		c["performer"] = list(ref(patient))
	} else {
		c["performer"] = list(map[string]any{"display": signer})
	}
	return b.add("Consent", SourceKeySystem, key, c)
}
