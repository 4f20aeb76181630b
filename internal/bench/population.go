package bench

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/calaimfhir/calaimfhir/profiles"
)

// Code systems used by the synthetic data that profiles/canon.go does not name (HL7's own).
const (
	conditionCategorySystem = "http://terminology.hl7.org/CodeSystem/condition-category"
	conditionClinicalSystem = "http://terminology.hl7.org/CodeSystem/condition-clinical"
	observationCategorySys  = "http://terminology.hl7.org/CodeSystem/observation-category"
	consentScopeSystem      = "http://terminology.hl7.org/CodeSystem/consentscope"
	actCodeSystem           = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
	identifierTypeSystem    = "http://terminology.hl7.org/CodeSystem/v2-0203"
	taskCodeSystem          = "http://hl7.org/fhir/CodeSystem/task-code"
	claimTypeSystem         = "http://terminology.hl7.org/CodeSystem/claim-type"
	processPrioritySystem   = "http://terminology.hl7.org/CodeSystem/processpriority"
	sdohCategoryCode        = "sdoh"
)

// service is one CalAIM service a referral may ask for: its program and billing code.
type service struct {
	program  string // ProgramSystem code: ecm, community-supports, chw
	system   string // CPT or HCPCS
	code     string
	modifier string
	display  string
	category string // SDOHCC category code
	zcode    string // a typical ICD-10-CM reason
}

// services covers every program: ECM, each of the 15 Community Supports, and CHW services
// (codes from the domain brief).
var services = []service{
	{"ecm", profiles.HCPCSSystem, "G9008", "U1", "Enhanced Care Management", "homelessness", "Z59.02"},
	{"community-supports", profiles.HCPCSSystem, "H0043", "U6", "Housing Transition Navigation", "housing-instability", "Z59.811"},
	{"community-supports", profiles.HCPCSSystem, "H0044", "U2", "Housing Deposits", "housing-instability", "Z59.811"},
	{"community-supports", profiles.HCPCSSystem, "T2040", "U6", "Housing Tenancy and Sustaining", "housing-instability", "Z59.812"},
	{"community-supports", profiles.HCPCSSystem, "H0043", "U3", "Short-Term Post-Hospitalization Housing", "homelessness", "Z59.01"},
	{"community-supports", profiles.HCPCSSystem, "T2033", "U6", "Recuperative Care", "homelessness", "Z59.02"},
	{"community-supports", profiles.HCPCSSystem, "T2012", "U6", "Day Habilitation", "homelessness", "Z59.00"},
	{"community-supports", profiles.HCPCSSystem, "S5151", "U6", "Caregiver Respite", "stress", "Z63.6"},
	{"community-supports", profiles.HCPCSSystem, "T2038", "U4", "Nursing Facility Transition to Assisted Living", "inadequate-housing", "Z59.19"},
	{"community-supports", profiles.HCPCSSystem, "T2038", "U5", "Community Transition to a Home", "inadequate-housing", "Z59.19"},
	{"community-supports", profiles.HCPCSSystem, "S5130", "U6", "Personal Care and Homemaker", "social-connection", "Z60.2"},
	{"community-supports", profiles.HCPCSSystem, "S5165", "U6", "Environmental Accessibility Adaptations", "inadequate-housing", "Z59.19"},
	{"community-supports", profiles.HCPCSSystem, "S5170", "U6", "Medically Tailored Meals", "food-insecurity", "Z59.41"},
	{"community-supports", profiles.HCPCSSystem, "H0014", "U6", "Sobering Center", "sdoh-category-unspecified", "Z63.72"},
	{"community-supports", profiles.HCPCSSystem, "S5165", "U5", "Asthma Remediation", "inadequate-housing", "Z59.19"},
	{"community-supports", profiles.HCPCSSystem, "H0040", "U1", "Transitional Rent", "housing-instability", "Z59.811"},
	{"chw", profiles.CPTSystem, "98960", "", "CHW education, 1 patient", "personal-health-literacy", "Z55.6"},
	{"chw", profiles.CPTSystem, "98961", "", "CHW education, 2-4 patients", "food-insecurity", "Z59.41"},
}

// loadStatuses are the Task statuses of the loaded population and the owner's steps to each
// (after the requester creates it as requested): every status a referral can be in.
var loadStatuses = []struct {
	status string
	steps  []string
	weight int
}{
	{"requested", nil, 30},
	{"accepted", []string{"accepted"}, 15},
	{"in-progress", []string{"accepted", "in-progress"}, 15},
	{"on-hold", []string{"accepted", "on-hold"}, 5},
	{"completed", []string{"accepted", "in-progress", "completed"}, 20},
	{"rejected", []string{"rejected"}, 5},
	{"cancelled", []string{"cancelled"}, 5},
	{"failed", []string{"accepted", "failed"}, 5},
}

var (
	families = []string{"Garcia", "Nguyen", "Smith", "Hernandez", "Kim", "Lopez", "Johnson", "Tran", "Martinez", "Singh", "Rivera", "Chen", "Williams", "Flores", "Patel"}
	givens   = []string{"Maria", "Jose", "Linh", "James", "Ana", "David", "Mei", "Luis", "Sarah", "Ahmed", "Rosa", "Kevin", "Grace", "Omar", "Elena"}
)

// Population is a synthetic CalAIM population: one plan, its CBOs and referring clinics, and
// members, each with Coverage, a screening, an SDOH Condition, a Consent and a referral
// (ServiceRequest + Task), about half with a CHW encounter and a third with a claim.
type Population struct {
	Prefix  string // id prefix that keeps runs apart on one server
	Plan    string // "Organization/<id>"
	CBOs    []string
	Clinics []string
	Members []*Member
	start   time.Time
}

// Member is one person and the ids of what the population holds about them.
type Member struct {
	Index       int
	CIN         string
	PatientID   string
	CoverageID  string
	ConditionID string
	ConsentID   string
	SRID        string
	Task        *TaskState
	CBO         string // the CBO the referral went to
	Service     service
	Referred    time.Time // the referral's authoredOn
	claims      atomic.Int64
	steps       []string         // owner steps to the loaded status
	docs        []map[string]any // until loaded
	loaded      int              // how many of docs were loaded
}

// TaskState is a Task the workload can move along the referral workflow.
type TaskState struct {
	ID      string
	Version int64
	Owner   string // "Organization/<id>"
	Doc     map[string]any
}

// Generate builds a population of members members and cbos CBOs from seed. The same seed
// and prefix give the same population.
func Generate(seed uint64, prefix string, members, cbos int) *Population {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	p := &Population{Prefix: prefix, Plan: "Organization/" + prefix + "plan",
		start: time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)}
	for i := range max(cbos, 1) {
		p.CBOs = append(p.CBOs, fmt.Sprintf("Organization/%scbo-%d", prefix, i))
	}
	for i := range 4 {
		p.Clinics = append(p.Clinics, fmt.Sprintf("Organization/%sclinic-%d", prefix, i))
	}
	totalWeight := 0
	for _, s := range loadStatuses {
		totalWeight += s.weight
	}
	for i := range members {
		m := &Member{Index: i, CIN: cin(prefix, i)}
		m.PatientID = fmt.Sprintf("%spat-%06d", prefix, i)
		m.CoverageID = fmt.Sprintf("%scov-%06d", prefix, i)
		m.ConditionID = fmt.Sprintf("%scond-%06d", prefix, i)
		m.ConsentID = fmt.Sprintf("%scons-%06d", prefix, i)
		m.SRID = fmt.Sprintf("%ssr-%06d", prefix, i)
		m.CBO = p.CBOs[rng.IntN(len(p.CBOs))]
		m.Service = services[i%len(services)] // every program and service appears
		w := rng.IntN(totalWeight)
		for _, s := range loadStatuses {
			if w -= s.weight; w < 0 {
				m.steps = s.steps
				break
			}
		}
		p.member(rng, m)
		p.Members = append(p.Members, m)
	}
	return p
}

// cin makes a Medi-Cal CIN (8 digits and a letter) unique per prefix and member.
func cin(prefix string, i int) string {
	var h uint32 = 2166136261
	for _, c := range []byte(prefix) {
		h = (h ^ uint32(c)) * 16777619
	}
	return fmt.Sprintf("%08d%c", (uint64(h)*7919+uint64(i))%100000000, 'A'+rune(h%26))
}

func ref(r string) map[string]any { return map[string]any{"reference": r} }

func coding(system, code string) map[string]any {
	return map[string]any{"system": system, "code": code}
}

func concept(system, code string) map[string]any {
	return map[string]any{"coding": []any{coding(system, code)}}
}

// Organizations are the plan, CBOs and clinics, with NPIs.
func (p *Population) Organizations() []map[string]any {
	var out []map[string]any
	add := func(refStr, name string, n int, typ string) {
		out = append(out, map[string]any{
			"resourceType": "Organization", "id": refStr[len("Organization/"):], "active": true, "name": name,
			"identifier": []any{map[string]any{"system": profiles.NPISystem, "value": npi(n)}},
			"type":       []any{concept("http://terminology.hl7.org/CodeSystem/organization-type", typ)},
		})
	}
	add(p.Plan, "Bench Health Plan", 0, "pay")
	for i, c := range p.CBOs {
		add(c, fmt.Sprintf("Bench Community Organization %d", i), 100+i, "cg")
	}
	for i, c := range p.Clinics {
		add(c, fmt.Sprintf("Bench Clinic %d", i), 1000+i, "prov")
	}
	return out
}

// npi returns a 10-digit NPI with a valid Luhn check digit (computed over 80840 + 9 digits).
func npi(n int) string {
	base := fmt.Sprintf("1%08d", n%100000000)
	digits := "80840" + base
	sum := 0
	for i := len(digits) - 1; i >= 0; i-- {
		d := int(digits[i] - '0')
		if (len(digits)-1-i)%2 == 0 { // double every second digit from the right, starting with the rightmost
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return base + fmt.Sprint((10-sum%10)%10)
}

// member builds the resources of one member, in dependency order.
func (p *Population) member(rng *rand.Rand, m *Member) {
	day := p.start.Add(time.Duration(m.Index%300) * 24 * time.Hour)
	m.Referred = day
	patient := "Patient/" + m.PatientID
	svc := m.Service
	m.docs = append(m.docs,
		map[string]any{"resourceType": "Patient", "id": m.PatientID,
			"identifier": []any{map[string]any{"type": concept(identifierTypeSystem, "MA"), "system": profiles.CINSystem, "value": m.CIN}},
			"name":       []any{map[string]any{"family": families[rng.IntN(len(families))], "given": []any{givens[rng.IntN(len(givens))]}}},
			"gender":     []string{"female", "male"}[rng.IntN(2)],
			"birthDate":  fmt.Sprintf("%04d-%02d-%02d", 1940+rng.IntN(80), 1+rng.IntN(12), 1+rng.IntN(28)),
			"address":    []any{map[string]any{"city": "Riverside", "state": "CA", "postalCode": fmt.Sprintf("92%03d", rng.IntN(1000))}},
		},
		map[string]any{"resourceType": "Coverage", "id": m.CoverageID, "status": "active",
			"beneficiary": ref(patient), "payor": []any{ref(p.Plan)}, "subscriberId": m.CIN,
			"type":   concept(actCodeSystem, "SUBSIDIZ"),
			"period": map[string]any{"start": "2026-01-01"},
		},
		map[string]any{"resourceType": "Observation", "id": fmt.Sprintf("%sobs-%06d", p.Prefix, m.Index), "status": "final",
			"category": []any{concept(observationCategorySys, "survey"), concept(profiles.SDOHCCCategorySystem, svc.category)},
			"code":     concept(profiles.LOINCSystem, "88124-3"), "subject": ref(patient),
			"effectiveDateTime":    day.Format(time.RFC3339),
			"valueCodeableConcept": concept(profiles.LOINCSystem, "LA19952-3"),
		},
		map[string]any{"resourceType": "Condition", "id": m.ConditionID,
			"clinicalStatus": concept(conditionClinicalSystem, "active"),
			"category":       []any{concept(conditionCategorySystem, "health-concern"), concept(profiles.SDOHCCCategorySystem, svc.category)},
			"code":           concept(profiles.ICD10CMSystem, svc.zcode), "subject": ref(patient),
		},
		map[string]any{"resourceType": "Consent", "id": m.ConsentID, "status": "active",
			"scope":    concept(consentScopeSystem, "patient-privacy"),
			"category": []any{concept(actCodeSystem, "IDSCL")}, "patient": ref(patient),
			"dateTime": day.Format(time.RFC3339), "organization": []any{ref(p.Plan)},
			"policyRule": concept(actCodeSystem, "TREAT"),
			"provision": map[string]any{"type": "permit", "actor": []any{map[string]any{
				"role": concept("http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "IRCP"), "reference": ref(m.CBO)}}},
		},
		map[string]any{"resourceType": "ServiceRequest", "id": m.SRID, "status": "active", "intent": "order",
			"extension": []any{map[string]any{"url": profiles.ExtProgram, "valueCoding": coding(profiles.ProgramSystem, svc.program)}},
			"category":  []any{concept(profiles.SDOHCCCategorySystem, svc.category)},
			"code":      map[string]any{"coding": []any{coding(svc.system, svc.code)}, "text": svc.display},
			"subject":   ref(patient), "requester": ref(p.Plan), "performer": []any{ref(m.CBO)},
			"reasonReference": []any{ref("Condition/" + m.ConditionID)},
			"supportingInfo":  []any{ref("Consent/" + m.ConsentID)},
			"authoredOn":      day.Format(time.RFC3339),
		},
	)
	task := taskDoc(fmt.Sprintf("%stask-%06d", p.Prefix, m.Index), fmt.Sprintf("%sR-%06d", p.Prefix, m.Index),
		"ServiceRequest/"+m.SRID, patient, p.Plan, m.CBO, day)
	m.Task = &TaskState{ID: task["id"].(string), Owner: m.CBO, Doc: task}
	m.docs = append(m.docs, task)
	if m.Index%2 == 0 {
		m.docs = append(m.docs, map[string]any{"resourceType": "Encounter", "id": fmt.Sprintf("%senc-%06d", p.Prefix, m.Index),
			"status": "finished", "class": coding(actCodeSystem, "AMB"),
			"type":    []any{concept(profiles.CPTSystem, "98960")},
			"subject": ref(patient), "serviceProvider": ref(m.CBO),
			"period":          map[string]any{"start": day.Add(2 * time.Hour).Format(time.RFC3339), "end": day.Add(150 * time.Minute).Format(time.RFC3339)},
			"reasonReference": []any{ref("Condition/" + m.ConditionID)},
		})
	}
	if m.Index%3 == 0 {
		m.docs = append(m.docs, p.claim(fmt.Sprintf("%sclaim-%06d", p.Prefix, m.Index), m, day))
	}
}

// taskDoc is a referral Task (Gravity TaskForReferralManagement) as the requester sends it.
func taskDoc(id, referralID, focus, patient, requester, owner string, at time.Time) map[string]any {
	t := map[string]any{"resourceType": "Task", "status": "requested", "intent": "order", "priority": "routine",
		"identifier": []any{map[string]any{"system": profiles.ExternalReferralIDSystem, "value": referralID}},
		"code":       concept(taskCodeSystem, "fulfill"),
		"focus":      ref(focus), "for": ref(patient), "authoredOn": at.Format(time.RFC3339),
		"requester": ref(requester), "owner": ref(owner),
	}
	if id != "" {
		t["id"] = id
	}
	return t
}

// claim is a professional claim from the member's CBO for the referral's service.
func (p *Population) claim(id string, m *Member, day time.Time) map[string]any {
	svc := m.Service
	item := map[string]any{"sequence": 1, "productOrService": concept(svc.system, svc.code),
		"servicedDate": day.Format("2006-01-02"), "quantity": map[string]any{"value": 1},
		"diagnosisSequence": []any{1}, "unitPrice": map[string]any{"value": 85, "currency": "USD"},
		"net":                     map[string]any{"value": 85, "currency": "USD"},
		"locationCodeableConcept": concept("https://www.cms.gov/Medicare/Coding/place-of-service-codes/Place_of_Service_Code_Set", "12")}
	if svc.modifier != "" {
		item["modifier"] = []any{concept(profiles.HCPCSSystem, svc.modifier)}
	}
	c := map[string]any{"resourceType": "Claim", "status": "active", "use": "claim",
		"type": concept(claimTypeSystem, "professional"), "patient": ref("Patient/" + m.PatientID),
		"created": day.Add(24 * time.Hour).Format(time.RFC3339), "provider": ref(m.CBO), "insurer": ref(p.Plan),
		"priority":  concept(processPrioritySystem, "normal"),
		"insurance": []any{map[string]any{"sequence": 1, "focal": true, "coverage": ref("Coverage/" + m.CoverageID)}},
		"diagnosis": []any{map[string]any{"sequence": 1, "diagnosisCodeableConcept": concept(profiles.ICD10CMSystem, svc.zcode)}},
		"item":      []any{item},
		"total":     map[string]any{"value": 85, "currency": "USD"},
	}
	if id != "" {
		c["id"] = id
	}
	return c
}

// Resources counts the resources the population loads (organizations included).
func (p *Population) Resources() int {
	n := len(p.Organizations())
	for _, m := range p.Members {
		n += len(m.docs) + m.loaded
	}
	return n
}

// Documents returns every resource of the population (organizations first) as the loader
// sends them, for micro-benchmarks that want realistic documents of each type; call it before
// loading, which lets each member's documents go. The maps are the population's own: callers
// must not change them.
func (p *Population) Documents() []map[string]any {
	out := p.Organizations()
	for _, m := range p.Members {
		out = append(out, m.docs...)
	}
	return out
}

// SampleDocuments returns one JSON document per resource type of a small population from
// seed, keyed by type, for micro-benchmarks.
func SampleDocuments(seed uint64) map[string][]byte {
	p := Generate(seed, "s-", 6, 2)
	out := map[string][]byte{}
	for _, d := range p.Documents() {
		typ := d["resourceType"].(string)
		if _, ok := out[typ]; !ok {
			b, err := json.Marshal(d)
			if err != nil {
				panic(err) // plain maps of strings, numbers and slices always marshal
			}
			out[typ] = b
		}
	}
	return out
}
