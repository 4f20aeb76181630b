package mapping

import (
	"time"
	_ "time/tzdata" // start/end times are California local time, wherever the server runs

	"github.com/calaimfhir/calaimfhir/profiles"
)

// california is the time zone of start_time and end_time.
var california = mustLocation("America/Los_Angeles")

func mustLocation(name string) *time.Location {
	loc, err := time.LoadLocation(name)
	if err != nil {
		panic(err) // embedded by time/tzdata
	}
	return loc
}

// convertCHWEncounter maps one CHW session to an Encounter (the CHW as primary performer, the
// supervising provider as responsible party), a Procedure for the service, and a draft Claim:
// CPT 98960/98961/98962 by the number of patients in the session, units of 30 minutes by the
// midpoint rule (chwUnits), the needs addressed as diagnoses, the CHW and the supervisor in the
// care team. The Claim needs the member's Coverage, so it is drafted only when plan_id is
// given; a session under 16 minutes is not billable and gets no Claim (a warning says so).
//
// Identity: encounter_id within the billing organization (SourceKeySystem
// "chw-encounter/<billing_npi>/<encounter_id>").
func convertCHWEncounter(r *record, b *Bundle) string {
	eid := r.str("encounter_id")
	cin := r.str("member_cin")
	day, okDate := r.date("encounter_date")
	var start, end time.Time
	minutes := r.int("minutes", 0)
	if okDate && r.str("start_time") != "" && r.str("end_time") != "" {
		start, _ = time.ParseInLocation("2006-01-02 15:04", day.Format(time.DateOnly)+" "+r.str("start_time"), california)
		end, _ = time.ParseInLocation("2006-01-02 15:04", day.Format(time.DateOnly)+" "+r.str("end_time"), california)
		if !end.After(start) {
			r.fail("end_time", "%s is not after start_time %s", r.str("end_time"), r.str("start_time"))
		} else if minutes == 0 {
			minutes = int(end.Sub(start).Minutes())
		}
	}
	patients := r.int("patients_in_session", 1)
	cpt, cptDisplay, okCPT := chwCPT(patients)
	if !okCPT {
		r.fail("patients_in_session", "%d patients: CHW sessions bill 1 to 8 patients", patients)
	}
	var needs []string
	if okDate {
		needs = r.diagnoses("needs_addressed", day)
	}
	chwNPI := r.npi("chw_npi")
	supNPI := r.npi("supervising_npi")
	billNPI := r.npi("billing_npi")
	key := "chw-encounter/" + r.str("billing_npi") + "/" + eid
	if len(r.errs) > 0 || !okDate || supNPI == "" || billNPI == "" {
		return eid
	}
	dos := day.Format(time.DateOnly)
	r.recordDate = dos
	patient := r.patient(b)
	coverage := r.plan(b, patient, cin)

	chw := map[string]any{"identifier": ident(profiles.CHWIDSystem, r.str("chw_id")), "active": true,
		"qualification": list(map[string]any{"code": map[string]any{"text": "Community Health Worker"}})}
	if v := r.str("chw_name"); v != "" {
		chw["name"] = list(map[string]any{"text": v})
	}
	var chwRef string
	if chwNPI != "" {
		chw["identifier"] = append(chw["identifier"].([]any), map[string]any{"system": profiles.NPISystem, "value": chwNPI})
		chwRef = b.add("Practitioner", profiles.NPISystem, chwNPI, chw)
	} else {
		chwRef = b.add("Practitioner", profiles.CHWIDSystem, r.str("chw_id"), chw)
	}
	supervisor := practitioner(b, supNPI, r.str("supervising_name"))
	billing := organization(b, billNPI, r.str("billing_name"))

	class := coding("http://terminology.hl7.org/CodeSystem/v3-ActCode", "AMB", "ambulatory")
	pos, posDisplay := "99", "Other Place of Service"
	if r.str("modality") != "in-person" {
		class = coding("http://terminology.hl7.org/CodeSystem/v3-ActCode", "VR", "virtual")
		pos, posDisplay = "02", "Telehealth Provided Other than in Patient's Home"
	}
	if v := r.str("place_of_service"); v != "" {
		pos, posDisplay = v, ""
	}
	mode := map[string][2]string{"in-person": {"FACE", "face-to-face"}, "telehealth": {"VIDEOCONF", "videoconferencing"}, "phone": {"PHONE", "telephone"}}[r.str("modality")]
	service := r.str("service_type")
	serviceCoding := coding(profiles.CHWServiceTypeSystem, service, chwServiceDisplay[service])
	var reasons []any
	for _, c := range needs {
		reasons = append(reasons, concept(coding(profiles.ICD10CMSystem, c, diagnosisDisplay(c))))
	}

	enc := map[string]any{
		"meta":       meta(profiles.EncounterProfile),
		"identifier": ident(SourceKeySystem, key),
		"status":     "finished",
		"class":      class,
		"type":       list(concept(serviceCoding)),
		// The modality (the DHCS files tell in person from telephonic and video).
		"serviceType": concept(coding(ModalitySystem, mode[0], mode[1])),
		"subject":     ref(patient),
		"participant": list(
			map[string]any{
				"type":       list(concept(coding("http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "PPRF", "primary performer"))),
				"individual": ref(chwRef),
			},
			map[string]any{
				"type":       list(map[string]any{"coding": list(coding("http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "RESP", "responsible party")), "text": "supervising provider"}),
				"individual": ref(supervisor),
			},
		),
		"length":          map[string]any{"value": minutes, "unit": "min", "system": "http://unitsofmeasure.org", "code": "min"},
		"reasonCode":      reasons,
		"serviceProvider": ref(billing),
	}
	period := map[string]any{"start": dos, "end": dos}
	if !start.IsZero() && end.After(start) {
		period = map[string]any{"start": start.Format(time.RFC3339), "end": end.Format(time.RFC3339)}
	}
	enc["period"] = period
	if minutes == 0 {
		delete(enc, "length")
	}
	encRef := b.add("Encounter", SourceKeySystem, key, enc)

	proc := map[string]any{
		"identifier": ident(SourceKeySystem, key+"/procedure"),
		"status":     "completed",
		"category":   concept(coding(profiles.SNOMEDSystem, "410606002", "Social service procedure")),
		"code":       concept(serviceCoding),
		"subject":    ref(patient),
		"encounter":  ref(encRef),
		"performer":  list(map[string]any{"actor": ref(chwRef), "onBehalfOf": ref(billing)}),
		"reasonCode": reasons,
	}
	if p, ok := period["start"].(string); ok && len(p) > 10 {
		proc["performedPeriod"] = period
	} else {
		proc["performedDateTime"] = dos
	}
	if v := r.str("notes"); v != "" {
		proc["note"] = list(map[string]any{"text": v})
	}
	b.add("Procedure", SourceKeySystem, key+"/procedure", proc)

	units := chwUnits(minutes)
	switch {
	case coverage == "":
		r.warn("no Claim drafted: plan_id is needed for the member's Coverage")
		return eid
	case units == 0:
		r.warn("no Claim drafted: %d minutes is under the 16 minutes one 30-minute unit needs", minutes)
		return eid
	}
	var diagnoses, pointers []any
	for i, c := range needs {
		diagnoses = append(diagnoses, map[string]any{
			"sequence":                 i + 1,
			"diagnosisCodeableConcept": concept(coding(profiles.ICD10CMSystem, c, diagnosisDisplay(c))),
		})
		if i < 4 {
			pointers = append(pointers, i+1)
		}
	}
	claim := map[string]any{
		"meta":       meta(profiles.ClaimProfile),
		"identifier": ident(SourceKeySystem, key+"/claim"),
		"status":     "draft",
		"type":       concept(coding("http://terminology.hl7.org/CodeSystem/claim-type", "professional", "Professional")),
		"use":        "claim",
		"patient":    ref(patient),
		"created":    dos,
		"provider":   refNPI(billing, billNPI),
		"priority":   concept(coding("http://terminology.hl7.org/CodeSystem/processpriority", "normal", "Normal")),
		"careTeam": list(
			map[string]any{"sequence": 1, "provider": chwProvider(chwRef, chwNPI), "role": concept(coding("http://terminology.hl7.org/CodeSystem/claimcareteamrole", "primary", "Primary provider"))},
			map[string]any{"sequence": 2, "provider": refNPI(supervisor, supNPI), "role": concept(coding("http://terminology.hl7.org/CodeSystem/claimcareteamrole", "supervisor", "Supervising Provider"))},
		),
		"diagnosis": diagnoses,
		"insurance": list(map[string]any{"sequence": 1, "focal": true, "coverage": ref(coverage)}),
		"item": list(map[string]any{
			"sequence":                1,
			"careTeamSequence":        list(1, 2),
			"diagnosisSequence":       pointers,
			"productOrService":        concept(coding(profiles.CPTSystem, cpt, cptDisplay)),
			"servicedDate":            dos,
			"locationCodeableConcept": concept(coding("https://www.cms.gov/Medicare/Coding/place-of-service-codes/Place_of_Service_Code_Set", pos, posDisplay)),
			"quantity":                map[string]any{"value": units},
			"encounter":               list(ref(encRef)),
		}),
	}
	b.add("Claim", SourceKeySystem, key+"/claim", claim)
	return eid
}

// refNPI is a reference that also carries the NPI, so a claim names its providers by NPI
// even before the references are resolved.
func refNPI(fullURL, npi string) map[string]any {
	m := ref(fullURL)
	m["identifier"] = map[string]any{"system": profiles.NPISystem, "value": npi}
	return m
}

func chwProvider(fullURL, npi string) map[string]any {
	if npi == "" {
		return ref(fullURL)
	}
	return refNPI(fullURL, npi)
}
