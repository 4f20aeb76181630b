package mapping

import (
	"encoding/json"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/calaimfhir/calaimfhir/profiles"
)

// instrument is a screening questionnaire: its LOINC panel, the questions it may carry and the
// SDOHCC domain of each.
type instrument struct {
	panel, display string
	questions      map[string]question
}

type question struct {
	display, category string
}

// finding is what a positive answer means: an SDOH domain, its ICD-10-CM code (picked by date
// of service when the code changed) and, where one is standard, a SNOMED CT finding.
type finding struct {
	category              string
	icd                   func(dos string) string
	snomed, snomedDisplay string
}

func fixed(code string) func(string) string { return func(string) string { return code } }

var (
	foodInsecurity = finding{"food-insecurity", fixed("Z59.41"), "733423003", "Food insecurity"}
	homelessness   = finding{"homelessness", fixed("Z59.00"), "32911000", "Homeless"}
	housingRisk    = finding{"housing-instability", fixed("Z59.811"), "", ""}
	unemployment   = finding{"employment-status", fixed("Z56.0"), "73438004", "Unemployed"}
	transportation = finding{"transportation-insecurity", fixed("Z59.82"), "", ""}
	materialNeeds  = finding{"material-hardship", fixed("Z59.87"), "", ""}
	utilities      = finding{"utility-insecurity", func(dos string) string {
		if dos >= "2025-10-01" {
			return "Z59.861"
		}
		return "Z59.12"
	}, "", ""}
)

// Answers (LOINC LA codes) that make a domain positive, per instrument and question. Hunger
// Vital Sign: "often true" or "sometimes true" to either question. PRAPARE and AHC HRSN as in
// the domain brief; the material-needs answer codes are UNVERIFIED (LOINC answer list for
// 93031-3) and live here only.
var positive = map[string]map[string]map[string]finding{
	"hunger-vital-sign": {
		"88122-7": {"LA28397-0": foodInsecurity, "LA6729-3": foodInsecurity},
		"88123-5": {"LA28397-0": foodInsecurity, "LA6729-3": foodInsecurity},
	},
	"prapare": {
		"71802-3": {"LA30190-5": homelessness},
		"93033-9": {"LA33-6": housingRisk},
		"67875-5": {"LA17956-6": unemployment},
		"93030-5": {"LA30133-5": transportation, "LA30134-3": transportation},
		"93031-3": {"LA30125-1": foodInsecurity, "LA30126-9": materialNeeds, "LA30124-4": utilities, "LA30127-7": materialNeeds,
			"LA30128-5": materialNeeds, "LA30129-3": materialNeeds},
	},
	"ahc-hrsn": {
		"71802-3": {"LA31995-6": homelessness, "LA31994-9": housingRisk},
		"88122-7": {"LA28397-0": foodInsecurity, "LA6729-3": foodInsecurity},
		"88123-5": {"LA28397-0": foodInsecurity, "LA6729-3": foodInsecurity},
		"93030-5": {"LA33-6": transportation},
		"96779-4": {"LA33-6": utilities, "LA32002-0": utilities},
	},
}

var instruments = map[string]instrument{
	"hunger-vital-sign": {"88121-9", "Hunger Vital Sign [HVS]", map[string]question{
		"88122-7": {"Within the past 12Mo we worried whether our food would run out before we got money to buy more", "food-insecurity"},
		"88123-5": {"Within the past 12Mo the food we bought just didn't last and we didn't have money to get more", "food-insecurity"},
	}},
	"prapare": {"93025-5", "Protocol for Responding to and Assessing Patients' Assets, Risks, and Experiences [PRAPARE]", map[string]question{
		"56051-6": {"Do you consider yourself Hispanic/Latino?", "sdoh-category-unspecified"},
		"32624-9": {"Race", "sdoh-category-unspecified"},
		"93035-4": {"Seasonal or migrant farm work", "employment-status"},
		"93034-7": {"Have you been discharged from the armed forces of the United States?", "veteran-status"},
		"54899-0": {"Preferred language", "language-access"},
		"63512-8": {"How many family members, including yourself, do you currently live with?", "sdoh-category-unspecified"},
		"71802-3": {"Housing status", "homelessness"},
		"93033-9": {"Are you worried about losing your housing?", "housing-instability"},
		"56799-0": {"Address", "sdoh-category-unspecified"},
		"82589-3": {"Highest level of education", "educational-attainment"},
		"67875-5": {"Employment status - current", "employment-status"},
		"76437-3": {"Primary insurance", "health-insurance-coverage-status"},
		"63586-2": {"What was your best estimate of the total income of all family members from all sources, before taxes, in last year?", "financial-insecurity"},
		"93031-3": {"In the past year, have you or any family members you live with been unable to get any of the following when it was really needed?", "material-hardship"},
		"93030-5": {"Has lack of transportation kept you from medical appointments, meetings, work, or from getting things needed for daily living?", "transportation-insecurity"},
		"93029-7": {"How often do you see or talk to people that you care about and feel close to?", "social-connection"},
		"93038-8": {"Stress level", "stress"},
		"93028-9": {"In the past year, have you spent more than 2 nights in a row in a jail, prison, detention center, or juvenile correctional facility?", "incarceration-status"},
		"93027-1": {"Are you a refugee?", "sdoh-category-unspecified"},
		"93026-3": {"Do you feel physically and emotionally safe where you currently live?", "intimate-partner-violence"},
		"76501-6": {"Within the last year, have you been afraid of your partner or ex-partner?", "intimate-partner-violence"},
	}},
	"ahc-hrsn": {"96777-8", "Accountable health communities (AHC) health-related social needs screening (HRSN) tool", map[string]question{
		"71802-3": {"Housing status", "housing-instability"},
		"96778-6": {"Problems with place where you live", "inadequate-housing"},
		"88122-7": {"Within the past 12Mo we worried whether our food would run out before we got money to buy more", "food-insecurity"},
		"88123-5": {"Within the past 12Mo the food we bought just didn't last and we didn't have money to get more", "food-insecurity"},
		"93030-5": {"Has lack of transportation kept you from medical appointments, meetings, work, or from getting things needed for daily living?", "transportation-insecurity"},
		"96779-4": {"Has the electric, gas, oil, or water company threatened to shut off services in your home in past 12 months?", "utility-insecurity"},
		"95618-5": {"Physically hurt you [HITS]", "intimate-partner-violence"},
		"95617-7": {"Insult you or talk down to you [HITS]", "intimate-partner-violence"},
		"95616-9": {"Threaten you with physical harm [HITS]", "intimate-partner-violence"},
		"95615-1": {"Scream or curse at you [HITS]", "intimate-partner-violence"},
		"95614-4": {"Total score [HITS]", "intimate-partner-violence"},
		"76513-1": {"How hard is it for you to pay for the very basics like food, housing, medical care, and heating?", "financial-insecurity"},
	}},
}

var laPattern = regexp.MustCompile(`^LA[0-9]{1,6}-[0-9]$`)
var intPattern = regexp.MustCompile(`^-?[0-9]{1,9}$`)

// answer is one answer value: a LOINC answer code, an integer or text.
type answer struct{ code, integer, text string }

// answers reads the answers of a screening, from answers or from a QuestionnaireResponse.
func (r *record) answers() map[string][]answer {
	out := map[string][]answer{}
	addValue := func(q, v string) {
		v = strings.TrimSpace(v)
		switch {
		case laPattern.MatchString(v):
			out[q] = append(out[q], answer{code: v})
		case intPattern.MatchString(v):
			out[q] = append(out[q], answer{integer: v})
		default:
			out[q] = append(out[q], answer{text: v})
		}
	}
	if m, ok := r.f["answers"].(map[string]any); ok {
		for q, v := range m {
			switch x := v.(type) {
			case string:
				addValue(q, x)
			case json.Number:
				addValue(q, x.String())
			case []any:
				for _, s := range x {
					if s, ok := s.(string); ok {
						addValue(q, s)
					}
				}
			}
		}
		return out
	}
	qr, _ := r.f["questionnaire_response"].(map[string]any)
	items, _ := qr["item"].([]any)
	for i, it := range items {
		item, _ := it.(map[string]any)
		link, _ := item["linkId"].(string)
		if link == "" {
			r.fail("questionnaire_response", "item[%d] has no linkId (the LOINC question code)", i)
			continue
		}
		answersIn, _ := item["answer"].([]any)
		for _, a := range answersIn {
			am, _ := a.(map[string]any)
			switch {
			case am["valueCoding"] != nil:
				c, _ := am["valueCoding"].(map[string]any)
				code, _ := c["code"].(string)
				out[link] = append(out[link], answer{code: code})
			case am["valueInteger"] != nil:
				out[link] = append(out[link], answer{integer: jsonScalar(am["valueInteger"])})
			case am["valueString"] != nil:
				s, _ := am["valueString"].(string)
				out[link] = append(out[link], answer{text: s})
			case am["valueBoolean"] != nil:
				b, _ := am["valueBoolean"].(bool)
				if b {
					out[link] = append(out[link], answer{code: "LA33-6"})
				} else {
					out[link] = append(out[link], answer{code: "LA32-8"})
				}
			default:
				r.fail("questionnaire_response", "item %s: only valueCoding, valueInteger, valueString and valueBoolean answers are read", link)
			}
		}
	}
	return out
}

// convertScreening maps one screening to a QuestionnaireResponse, an Observation per question
// (SDOHCC ObservationScreeningResponse) grouped under a panel Observation, and for each
// positive domain a Condition (SDOH category, SNOMED CT finding where standard, ICD-10-CM
// Z-code) whose evidence points at the Observations that made it positive. A negative screen
// gives no Condition. Hunger Vital Sign also gets its computed risk (88124-3).
func convertScreening(r *record, b *Bundle) string {
	cin := r.str("member_cin")
	name := r.str("instrument")
	inst := instruments[name]
	day, okDate := r.date("screening_date")
	sid := r.str("screening_id")
	if sid == "" {
		sid = cin + "-" + name + "-" + r.str("screening_date")
	}
	ans := r.answers()
	codes := make([]string, 0, len(ans))
	for q := range ans {
		codes = append(codes, q)
	}
	sort.Strings(codes)
	for _, q := range codes {
		if _, ok := inst.questions[q]; !ok {
			r.fail("answers", "%s is not a %s question (LOINC codes: %s)", q, name, strings.Join(sortedKeys(inst.questions), ", "))
		}
		for _, a := range ans[q] {
			if a.code == "" && a.integer == "" && strings.TrimSpace(a.text) == "" {
				r.fail("answers", "%s has an empty answer", q)
			}
		}
	}
	if name == "hunger-vital-sign" {
		for _, q := range []string{"88122-7", "88123-5"} {
			if len(ans[q]) == 0 {
				r.fail("answers", "the Hunger Vital Sign needs an answer to %s", q)
			}
		}
	}
	screenerNPI := r.npi("screener_npi")
	if len(r.errs) > 0 || !okDate || len(codes) == 0 {
		if len(codes) == 0 && len(r.errs) == 0 {
			r.fail("answers", "the screening has no answers")
		}
		return sid
	}
	dos := day.Format(time.DateOnly)
	patient := r.patient(b)
	var screener string
	if screenerNPI != "" {
		screener = practitioner(b, screenerNPI, r.str("screener_name"))
	}
	key := "screening/" + sid

	qr := map[string]any{
		"identifier":    map[string]any{"system": SourceKeySystem, "value": key},
		"questionnaire": profiles.Base + "/Questionnaire/" + name,
		"status":        "completed",
		"subject":       ref(patient),
		"authored":      dos,
	}
	if screener != "" {
		qr["author"] = ref(screener)
	}
	var items []any
	for _, q := range codes {
		var values []any
		for _, a := range ans[q] {
			switch {
			case a.code != "":
				values = append(values, map[string]any{"valueCoding": coding(profiles.LOINCSystem, a.code, "")})
			case a.integer != "":
				values = append(values, map[string]any{"valueInteger": jsonInt(a.integer)})
			default:
				values = append(values, map[string]any{"valueString": a.text})
			}
		}
		items = append(items, map[string]any{"linkId": q, "text": inst.questions[q].display, "answer": values})
	}
	qr["item"] = items
	qrRef := b.add("QuestionnaireResponse", SourceKeySystem, key, qr)

	obsFor := map[string]string{} // question → Observation fullUrl
	var members []any
	for _, q := range codes {
		qd := inst.questions[q]
		o := screeningObservation(key+"/observation/"+q, patient, screener, qrRef, dos, qd.category, coding(profiles.LOINCSystem, q, qd.display))
		a := ans[q][0]
		switch {
		case len(ans[q]) > 1 || a.code != "":
			var codings []map[string]any
			for _, a := range ans[q] {
				if a.code != "" {
					codings = append(codings, coding(profiles.LOINCSystem, a.code, ""))
				}
			}
			if len(codings) > 0 {
				o["valueCodeableConcept"] = concept(codings...)
			} else {
				o["valueString"] = a.text
			}
		case a.integer != "":
			o["valueInteger"] = jsonInt(a.integer)
		default:
			o["valueString"] = a.text
		}
		obsFor[q] = b.add("Observation", SourceKeySystem, key+"/observation/"+q, o)
		members = append(members, ref(obsFor[q]))
	}

	// Findings: each positive domain once, with every Observation that made it positive.
	type hit struct {
		f        finding
		evidence []string
	}
	var hits []*hit
	byCategory := map[string]*hit{}
	for _, q := range codes {
		for _, a := range ans[q] {
			f, ok := positive[name][q][a.code]
			if !ok {
				continue
			}
			h := byCategory[f.category]
			if h == nil {
				h = &hit{f: f}
				byCategory[f.category] = h
				hits = append(hits, h)
			}
			if !slices.Contains(h.evidence, obsFor[q]) {
				h.evidence = append(h.evidence, obsFor[q])
			}
		}
	}
	if name == "hunger-vital-sign" {
		risk := coding(profiles.LOINCSystem, "LA19983-8", "No risk")
		if byCategory["food-insecurity"] != nil {
			risk = coding(profiles.LOINCSystem, "LA19952-3", "At risk")
		}
		o := screeningObservation(key+"/observation/88124-3", patient, screener, qrRef, dos, "food-insecurity",
			coding(profiles.LOINCSystem, "88124-3", "Food insecurity risk [HVS]"))
		o["valueCodeableConcept"] = concept(risk)
		o["derivedFrom"] = list(ref(obsFor["88122-7"]), ref(obsFor["88123-5"]))
		riskRef := b.add("Observation", SourceKeySystem, key+"/observation/88124-3", o)
		members = append(members, ref(riskRef))
		if h := byCategory["food-insecurity"]; h != nil {
			h.evidence = append(h.evidence, riskRef)
		}
	}
	panel := screeningObservation(key+"/observation/"+inst.panel, patient, screener, qrRef, dos, "", coding(profiles.LOINCSystem, inst.panel, inst.display))
	panel["hasMember"] = members
	b.add("Observation", SourceKeySystem, key+"/observation/"+inst.panel, panel)

	for _, h := range hits {
		icd := h.f.icd(dos)
		if msg := checkDiagnosis(icd, day); msg != "" {
			r.warn("no %s Condition: %s", h.f.category, msg)
			continue
		}
		sdohCondition(b, key+"/condition/"+icd, patient, icd, h.f.snomed, h.f.snomedDisplay, "health-concern", dos, h.evidence)
	}
	return sid
}

// screeningObservation is the common part of an SDOHCC ObservationScreeningResponse.
func screeningObservation(key, patient, screener, qr, dos, category string, code map[string]any) map[string]any {
	cats := []any{
		concept(coding("http://terminology.hl7.org/CodeSystem/observation-category", "survey", "Survey")),
	}
	if category == "" {
		category = "sdoh-category-unspecified"
	}
	{
		cats = append(cats, concept(coding(profiles.SDOHCCCategorySystem, category, sdohCategoryDisplay[category])))
	}
	o := map[string]any{
		"identifier":        ident(SourceKeySystem, key),
		"status":            "final",
		"category":          cats,
		"code":              concept(code),
		"subject":           ref(patient),
		"effectiveDateTime": dos,
		"derivedFrom":       list(ref(qr)),
	}
	if screener != "" {
		o["performer"] = list(ref(screener))
	}
	if c, _ := code["code"].(string); screeningCodes[c] {
		o["meta"] = meta(profiles.ScreeningProfile)
	}
	return o
}

// screeningCodes are the LOINC codes of the CalAIM screening value set
// (terminology/data/ValueSet-sdoh-screening-loinc.json): an Observation of another question
// (household size, race) is a plain survey Observation, not a CalAIM screening response.
var screeningCodes = map[string]bool{
	"88121-9": true, "88122-7": true, "88123-5": true, "88124-3": true, "93025-5": true, "71802-3": true, "93033-9": true,
	"93030-5": true, "93031-3": true, "67875-5": true, "63586-2": true, "93038-8": true, "93029-7": true, "93028-9": true,
	"93026-3": true, "76501-6": true, "76437-3": true, "96777-8": true, "97023-6": true, "96779-4": true, "95618-5": true,
	"95617-7": true, "95616-9": true, "95615-1": true, "95614-4": true, "76513-1": true,
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
