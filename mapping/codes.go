package mapping

import (
	"regexp"
	"strings"
	"time"
)

// The code tables the conversions need, from the domain brief (docs: README "Import").
// Service codes are this project's own (profiles.ServiceSystem); the HCPCS codes next to them
// are the DHCS coding options marked UNVERIFIED in the brief and are only carried along as
// extra codings, never checked against claims here.

// service is one CalAIM service a referral can ask for.
type service struct {
	code, display, program string
	category               string   // SDOHCC category of the need it meets
	hcpcs                  []string // HCPCS codes (modifiers not included)
}

var services = []service{
	{"cs-housing-transition-navigation", "Housing Transition Navigation Services", "community-supports", "housing-instability", []string{"H0043", "H2016"}},
	{"cs-housing-deposits", "Housing Deposits", "community-supports", "housing-instability", []string{"H0044"}},
	{"cs-housing-tenancy-sustaining", "Housing Tenancy and Sustaining Services", "community-supports", "housing-instability", []string{"T2040", "T2041", "T2050", "T2051"}},
	{"cs-short-term-post-hospitalization-housing", "Short-Term Post-Hospitalization Housing", "community-supports", "homelessness", []string{"H0043", "H0044"}},
	{"cs-recuperative-care", "Recuperative Care (Medical Respite)", "community-supports", "homelessness", []string{"T2033"}},
	{"cs-day-habilitation", "Day Habilitation Programs", "community-supports", "sdoh-category-unspecified", []string{"T2012", "T2014", "T2018", "T2020", "H2014", "H2038", "H2024", "H2026"}},
	{"cs-caregiver-respite", "Caregiver Respite Services", "community-supports", "sdoh-category-unspecified", []string{"H0045", "S5151", "S9125"}},
	{"cs-nf-transition-assisted-living", "Nursing Facility Transition/Diversion to Assisted Living Facilities", "community-supports", "sdoh-category-unspecified", []string{"T2038", "H2022"}},
	{"cs-community-transition", "Community Transition Services/Nursing Facility Transition to a Home", "community-supports", "housing-instability", []string{"T2038", "H0044"}},
	{"cs-personal-care-homemaker", "Personal Care and Homemaker Services", "community-supports", "sdoh-category-unspecified", []string{"S5130", "T1019"}},
	{"cs-environmental-accessibility", "Environmental Accessibility Adaptations (Home Modifications)", "community-supports", "inadequate-housing", []string{"S5165"}},
	{"cs-medically-tailored-meals", "Medically Tailored Meals/Medically Supportive Food", "community-supports", "food-insecurity", []string{"S5170", "S9470", "S9977"}},
	{"cs-sobering-centers", "Sobering Centers", "community-supports", "sdoh-category-unspecified", []string{"H0014"}},
	{"cs-asthma-remediation", "Asthma Remediation", "community-supports", "inadequate-housing", []string{"S5165"}},
	{"cs-transitional-rent", "Transitional Rent", "community-supports", "housing-instability", []string{"H0040", "H0043", "H0044"}},
	{"ecm", "Enhanced Care Management", "ecm", "sdoh-category-unspecified", []string{"G9008", "G9012"}},
	{"chw-health-education", "CHW Health Education", "chw", "sdoh-category-unspecified", nil},
	{"chw-health-navigation", "CHW Health Navigation", "chw", "sdoh-category-unspecified", nil},
	{"chw-screening-assessment", "CHW Screening and Assessment", "chw", "sdoh-category-unspecified", nil},
	{"chw-individual-support", "CHW Individual Support or Advocacy", "chw", "sdoh-category-unspecified", nil},
}

// findService accepts a service code or its display name (case and punctuation ignored), so a
// form can say "Medically Tailored Meals" or "medically-tailored-meals".
func findService(s string) (service, bool) {
	key := squash(s)
	for _, sv := range services {
		// The code system's codes (cs-…, chw-…), also without their prefix, or the display.
		bare := strings.TrimPrefix(strings.TrimPrefix(sv.code, "cs-"), "chw-")
		if squash(sv.code) == key || squash(bare) == key || squash(sv.display) == key {
			return sv, true
		}
	}
	// Short names as the brief writes them ("Recuperative Care", "Sobering Centers").
	for _, sv := range services {
		short, _, _ := strings.Cut(sv.display, " (")
		short, _, _ = strings.Cut(short, "/")
		if squash(short) == key {
			return sv, true
		}
	}
	return service{}, false
}

func squash(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if ('a' <= r && r <= 'z') || ('0' <= r && r <= '9') {
			b.WriteRune(r)
		}
	}
	return b.String()
}

var programDisplay = map[string]string{
	"ecm":                "Enhanced Care Management",
	"community-supports": "Community Supports",
	"chw":                "Community Health Worker services",
}

var populationsOfFocus = map[string]string{
	"1a": "Adults without dependent children/youth living with them experiencing homelessness",
	"1b": "Homeless families or unaccompanied children/youth experiencing homelessness",
	"2":  "Individuals at risk for avoidable hospital or ED utilization",
	"3":  "Individuals with serious mental health and/or SUD needs",
	"4":  "Individuals transitioning from incarceration",
	"5":  "Adults living in the community and at risk for LTC institutionalization",
	"6":  "Adult nursing facility residents transitioning to the community",
	"7":  "Children and youth enrolled in CCS or CCS WCM with additional needs beyond the CCS condition",
	"8":  "Children and youth involved in child welfare",
	"9":  "Birth equity population of focus",
}

// zcode is an ICD-10-CM SDOH code with the dates between which it may be billed: from is the
// first date of service it exists (zero: before any date we check), headerFrom the first date
// it is a header that must be coded more specifically (zero: never).
type zcode struct {
	display    string
	category   string // SDOHCC category
	from       string // YYYY-MM-DD
	headerFrom string // YYYY-MM-DD
	header     string // what to use instead, for the message
}

// zcodes are the SDOH Z-codes of the domain brief. FY22 = 2021-10-01, FY23 = 2022-10-01,
// FY26 = 2025-10-01; April updates on 2023-04-01.
var zcodes = map[string]zcode{
	"Z55.0":   {"Illiteracy and low-level literacy", "educational-attainment", "", "", ""},
	"Z55.5":   {"Less than a high school diploma", "educational-attainment", "2021-10-01", "", ""},
	"Z55.6":   {"Problems related to health literacy", "personal-health-literacy", "2023-04-01", "", ""},
	"Z56.0":   {"Unemployment, unspecified", "employment-status", "", "", ""},
	"Z56.2":   {"Threat of job loss", "employment-status", "", "", ""},
	"Z58.6":   {"Inadequate drinking-water supply", "material-hardship", "2021-10-01", "", ""},
	"Z58.8":   {"Other problems related to physical environment", "sdoh-category-unspecified", "", "2023-04-01", "Z58.81 or Z58.89"},
	"Z58.81":  {"Basic services unavailable in physical environment", "material-hardship", "2023-04-01", "", ""},
	"Z58.89":  {"Other problems related to physical environment", "sdoh-category-unspecified", "2023-04-01", "", ""},
	"Z59.0":   {"Homelessness", "homelessness", "", "2021-10-01", "Z59.00, Z59.01 or Z59.02"},
	"Z59.00":  {"Homelessness unspecified", "homelessness", "2021-10-01", "", ""},
	"Z59.01":  {"Sheltered homelessness", "homelessness", "2021-10-01", "", ""},
	"Z59.02":  {"Unsheltered homelessness", "homelessness", "2021-10-01", "", ""},
	"Z59.1":   {"Inadequate housing", "inadequate-housing", "", "2023-04-01", "Z59.10, Z59.11, Z59.12 or Z59.19"},
	"Z59.10":  {"Inadequate housing, unspecified", "inadequate-housing", "2023-04-01", "", ""},
	"Z59.11":  {"Inadequate housing environmental temperature", "inadequate-housing", "2023-04-01", "", ""},
	"Z59.12":  {"Inadequate housing utilities", "inadequate-housing", "2023-04-01", "", ""},
	"Z59.19":  {"Other inadequate housing", "inadequate-housing", "2023-04-01", "", ""},
	"Z59.2":   {"Discord with neighbors, lodgers and landlord", "housing-instability", "", "", ""},
	"Z59.3":   {"Problems related to living in residential institution", "sdoh-category-unspecified", "", "", ""},
	"Z59.4":   {"Lack of adequate food", "food-insecurity", "", "2021-10-01", "Z59.41 or Z59.48"},
	"Z59.41":  {"Food insecurity", "food-insecurity", "2021-10-01", "", ""},
	"Z59.48":  {"Other specified lack of adequate food", "food-insecurity", "2021-10-01", "", ""},
	"Z59.5":   {"Extreme poverty", "financial-insecurity", "", "", ""},
	"Z59.6":   {"Low income", "financial-insecurity", "", "", ""},
	"Z59.7":   {"Insufficient social insurance and welfare support", "health-insurance-coverage-status", "", "", ""},
	"Z59.8":   {"Other problems related to housing and economic circumstances", "sdoh-category-unspecified", "", "2021-10-01", "a Z59.8x code"},
	"Z59.81":  {"Housing instability, housed", "housing-instability", "2021-10-01", "2021-10-01", "Z59.811, Z59.812 or Z59.819"},
	"Z59.811": {"Housing instability, housed, with risk of homelessness", "housing-instability", "2021-10-01", "", ""},
	"Z59.812": {"Housing instability, housed, homelessness in past 12 months", "housing-instability", "2021-10-01", "", ""},
	"Z59.819": {"Housing instability, housed unspecified", "housing-instability", "2021-10-01", "", ""},
	"Z59.82":  {"Transportation insecurity", "transportation-insecurity", "2022-10-01", "", ""},
	"Z59.86":  {"Financial insecurity", "financial-insecurity", "2022-10-01", "2025-10-01", "Z59.861, Z59.868 or Z59.869"},
	"Z59.861": {"Financial insecurity, difficulty paying for utilities", "utility-insecurity", "2025-10-01", "", ""},
	"Z59.868": {"Other financial insecurity", "financial-insecurity", "2025-10-01", "", ""},
	"Z59.869": {"Financial insecurity, unspecified", "financial-insecurity", "2025-10-01", "", ""},
	"Z59.87":  {"Material hardship", "material-hardship", "2022-10-01", "", ""},
	"Z59.89":  {"Other problems related to housing and economic circumstances", "sdoh-category-unspecified", "2021-10-01", "", ""},
	"Z60.2":   {"Problems related to living alone", "social-connection", "", "", ""},
	"Z60.4":   {"Social exclusion and rejection", "social-connection", "", "", ""},
	"Z60.8":   {"Other problems related to social environment", "social-connection", "", "", ""},
	"Z63.0":   {"Problems in relationship with spouse or partner", "stress", "", "", ""},
	"Z63.4":   {"Disappearance and death of family member", "stress", "", "", ""},
	"Z63.5":   {"Disruption of family by separation and divorce", "stress", "", "", ""},
	"Z63.6":   {"Dependent relative needing care at home", "stress", "", "", ""},
	"Z63.72":  {"Alcoholism and drug addiction in family", "stress", "", "", ""},
	"Z65.0":   {"Conviction in civil and criminal proceedings without imprisonment", "incarceration-status", "", "", ""},
	"Z65.1":   {"Imprisonment and other incarceration", "incarceration-status", "", "", ""},
	"Z65.2":   {"Problems related to release from prison", "incarceration-status", "", "", ""},
	"Z65.3":   {"Problems related to other legal circumstances", "sdoh-category-unspecified", "", "", ""},
	"Z65.4":   {"Victim of crime and terrorism", "sdoh-category-unspecified", "", "", ""},
	"Z65.5":   {"Exposure to disaster, war and other hostilities", "sdoh-category-unspecified", "", "", ""},
	"Z65.8":   {"Other specified problems related to psychosocial circumstances", "sdoh-category-unspecified", "", "", ""},
}

var icd10Pattern = regexp.MustCompile(`^[A-TV-Z][0-9][0-9AB](\.[0-9A-TV-Z]{1,4})?$`)

// sdohRange reports whether a code is in the ICD-10-CM SDOH chapter range Z55–Z65.
func sdohRange(code string) bool {
	if len(code) < 3 || code[0] != 'Z' {
		return false
	}
	n := (int(code[1]-'0'))*10 + int(code[2]-'0')
	return n >= 55 && n <= 65
}

// checkDiagnosis says what is wrong with an ICD-10-CM code on a date of service ("" if
// nothing): the dotted form is required; SDOH Z-codes must be known and billable on that date.
// Other ICD-10-CM codes are checked for form only (this server holds no full code table).
func checkDiagnosis(code string, dos time.Time) string {
	if !icd10Pattern.MatchString(code) {
		if len(code) > 3 && !strings.Contains(code, ".") && icd10Pattern.MatchString(code[:3]+"."+code[3:]) {
			return "write ICD-10-CM codes in the dotted form (" + code[:3] + "." + code[3:] + ")"
		}
		return "is not an ICD-10-CM code (a letter, two characters, then an optional dot and up to 4 more, as Z59.41)"
	}
	if !sdohRange(code) {
		return ""
	}
	if len(code) == 3 {
		return code + " is a category header, not a billable code: use a more specific code"
	}
	z, ok := zcodes[code]
	if !ok {
		return code + " is not a known SDOH Z-code"
	}
	day := dos.Format(time.DateOnly)
	if z.from != "" && day < z.from {
		return code + " is not valid for dates of service before " + z.from
	}
	if z.headerFrom != "" && day >= z.headerFrom {
		return code + " is a header, not billable on " + day + ": use " + z.header
	}
	return ""
}

// diagnosisDisplay is the display of a known Z-code ("" for others).
func diagnosisDisplay(code string) string { return zcodes[code].display }

// categoryOf is the SDOHCC category of a Z-code ("" when it is not an SDOH code).
func categoryOf(code string) string { return zcodes[code].category }

var sdohCategoryDisplay = map[string]string{
	"food-insecurity":                  "Food Insecurity",
	"housing-instability":              "Housing Instability",
	"homelessness":                     "Homelessness",
	"inadequate-housing":               "Inadequate Housing",
	"transportation-insecurity":        "Transportation Insecurity",
	"financial-insecurity":             "Financial Insecurity",
	"material-hardship":                "Material Hardship",
	"educational-attainment":           "Educational Attainment",
	"employment-status":                "Employment Status",
	"stress":                           "Stress",
	"social-connection":                "Social Connection",
	"intimate-partner-violence":        "Intimate Partner Violence",
	"personal-health-literacy":         "Personal Health Literacy",
	"health-insurance-coverage-status": "Health Insurance Coverage Status",
	"utility-insecurity":               "Utility Insecurity",
	"incarceration-status":             "Incarceration Status",
	"veteran-status":                   "Veteran Status",
	"language-access":                  "Language Access",
	"sdoh-category-unspecified":        "SDOH Category Unspecified",
}

// CHW CPT codes by the number of patients in the session (domain brief).
func chwCPT(patients int) (code, display string, ok bool) {
	switch {
	case patients == 1:
		return "98960", "Self-management education and training, face-to-face, 1 patient, each 30 minutes", true
	case patients >= 2 && patients <= 4:
		return "98961", "Self-management education and training, face-to-face, 2-4 patients, each 30 minutes", true
	case patients >= 5 && patients <= 8:
		return "98962", "Self-management education and training, face-to-face, 5-8 patients, each 30 minutes", true
	}
	return "", "", false
}

// chwUnits is the number of 30-minute units billed for a session of the given length, by the
// midpoint rule: a unit counts once more than half of it (16 minutes) has passed, so 16-45
// minutes is 1 unit, 46-75 is 2, and under 16 minutes is not billable.
func chwUnits(minutes int) int {
	if minutes < 16 {
		return 0
	}
	return (minutes + 14) / 30
}

var chwServiceDisplay = map[string]string{
	"health-education":     "Health education",
	"health-navigation":    "Health navigation",
	"screening-assessment": "Screening and assessment",
	"individual-support":   "Individual support or advocacy",
}
