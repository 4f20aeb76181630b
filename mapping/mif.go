package mapping

import (
	"time"

	"github.com/calaimfhir/calaimfhir/profiles"
)

// convertMIF maps one DHCS Member Information File record (a member the plan assigns to an
// ECM provider for outreach) to the member's Patient, the plan's Organization and the member's
// Coverage, the ECM provider's Organization, and the assignment as an ECM ServiceRequest
// (program ecm, code ecm, the Populations of Focus) with its Task (requested, owner the ECM
// provider). The assignment is thus an ordinary referral: the provider accepts it and closes
// the loop with the same Task workflow, and the Return Transmission File is written from it.
//
// Identity: plan, member and provider ("dhcs-mif/<plan_id>/<cin>/<npi>"): the same member
// assigned to the same provider in next month's file is the same assignment.
func convertMIF(r *record, b *Bundle) string {
	plan := r.str("plan_id")
	cin := r.str("member_cin")
	assigned, okDate := r.date("assignment_date")
	if birth, ok := r.date("member_birth_date"); ok && okDate && birth.After(assigned) {
		r.fail("member_birth_date", "%s is after the assignment date %s", birth.Format(time.DateOnly), assigned.Format(time.DateOnly))
	}
	npi := r.npi("ecm_provider_npi")
	key := "dhcs-mif/" + plan + "/" + cin + "/" + r.str("ecm_provider_npi")
	if len(r.errs) > 0 || !okDate || npi == "" {
		return key
	}
	day := assigned.Format(time.DateOnly)
	r.recordDate = day
	patient := r.patient(b)
	r.plan(b, patient, cin)
	planRef := b.add("Organization", PlanIDSystem, plan, map[string]any{}) // added by plan(): its reference
	provider := organization(b, npi, r.str("ecm_provider_name"))

	svc, _ := findService("ecm")
	cats := []any{concept(coding(profiles.SDOHCCCategorySystem, svc.category, sdohCategoryDisplay[svc.category]))}
	if r.str("homeless") == "yes" {
		cats = append(cats, concept(coding(profiles.SDOHCCCategorySystem, "homelessness", sdohCategoryDisplay["homelessness"])))
	}
	priority := "routine"
	if r.str("acuity") == "high" {
		priority = "urgent"
	}
	ext := []any{map[string]any{
		"url":         profiles.ExtProgram,
		"valueCoding": coding(profiles.ProgramSystem, "ecm", programDisplay["ecm"]),
	}}
	for _, pof := range r.list("population_of_focus") {
		ext = append(ext, map[string]any{
			"url":         profiles.ExtPopulationOfFocus,
			"valueCoding": coding(profiles.PopulationOfFocusSystem, pof, populationsOfFocus[pof]),
		})
	}
	// No meta.profile: the CalAIM ServiceRequest needs a reason (Z-code or Condition), and a
	// MIF assignment has none; it is an assignment, not a clinical referral.
	sr := map[string]any{
		"identifier": ident(SourceKeySystem, key),
		"extension":  ext,
		"status":     "active",
		"intent":     "order",
		"priority":   priority,
		"category":   cats,
		"code":       serviceConcept(svc),
		"subject":    ref(patient),
		"authoredOn": day,
		"requester":  ref(planRef),
		"performer":  list(ref(provider)),
		"note":       list(map[string]any{"text": "Assigned for ECM outreach in the DHCS Member Information File of " + r.str("reporting_period")}),
	}
	srRef := b.add("ServiceRequest", SourceKeySystem, key, sr)
	requester := r.opts.Requester
	if requester == "" {
		requester = planRef
	}
	task := map[string]any{
		"meta":       meta(profiles.TaskProfile),
		"identifier": ident(SourceKeySystem, key),
		"status":     "requested",
		"intent":     "order",
		"priority":   priority,
		"code":       concept(coding("http://hl7.org/fhir/CodeSystem/task-code", "fulfill", "Fulfill the focal request")),
		"focus":      ref(srRef),
		"for":        ref(patient),
		"authoredOn": day,
		"requester":  ref(requester),
		"owner":      ref(provider),
		"input": list(map[string]any{
			"type":        map[string]any{"text": "MIF reporting period"},
			"valueString": r.str("reporting_period"),
		}),
	}
	b.add("Task", SourceKeySystem, key, task)
	return key
}
