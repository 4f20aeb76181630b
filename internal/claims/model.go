package claims

import (
	"strings"
	"time"
)

// The parts of FHIR R4 resources the checks and exports read. Decoding into these types is
// also the first check: a Claim whose elements have the wrong JSON shape is claim-invalid.

type Coding struct {
	System  string `json:"system,omitempty"`
	Code    string `json:"code,omitempty"`
	Display string `json:"display,omitempty"`
}

type CodeableConcept struct {
	Coding []Coding `json:"coding,omitempty"`
	Text   string   `json:"text,omitempty"`
}

// Code returns the code of the first coding in system ("" if none).
func (c *CodeableConcept) Code(system string) string {
	if c == nil {
		return ""
	}
	for _, cd := range c.Coding {
		if cd.System == system {
			return cd.Code
		}
	}
	return ""
}

// Has reports whether some coding is (system, code).
func (c *CodeableConcept) Has(system, code string) bool {
	if c == nil {
		return false
	}
	for _, cd := range c.Coding {
		if cd.System == system && cd.Code == code {
			return true
		}
	}
	return false
}

type Identifier struct {
	System string           `json:"system,omitempty"`
	Value  string           `json:"value,omitempty"`
	Type   *CodeableConcept `json:"type,omitempty"`
}

type Reference struct {
	Reference  string      `json:"reference,omitempty"`
	Identifier *Identifier `json:"identifier,omitempty"`
	Display    string      `json:"display,omitempty"`
}

type Quantity struct {
	Value *float64 `json:"value,omitempty"`
}

type Money struct {
	Value    *float64 `json:"value,omitempty"`
	Currency string   `json:"currency,omitempty"`
}

type Period struct {
	Start string `json:"start,omitempty"`
	End   string `json:"end,omitempty"`
}

// Claim is a decoded R4 Claim (the elements used here).
type Claim struct {
	ResourceType string           `json:"resourceType"`
	ID           string           `json:"id,omitempty"`
	Identifier   []Identifier     `json:"identifier,omitempty"`
	Status       string           `json:"status,omitempty"`
	Type         *CodeableConcept `json:"type,omitempty"`
	Use          string           `json:"use,omitempty"`
	Patient      *Reference       `json:"patient,omitempty"`
	Created      string           `json:"created,omitempty"`
	Insurer      *Reference       `json:"insurer,omitempty"`
	Provider     *Reference       `json:"provider,omitempty"`
	Priority     *CodeableConcept `json:"priority,omitempty"`
	CareTeam     []struct {
		Sequence int              `json:"sequence"`
		Provider Reference        `json:"provider"`
		Role     *CodeableConcept `json:"role,omitempty"`
	} `json:"careTeam,omitempty"`
	SupportingInfo []struct {
		Sequence      int              `json:"sequence"`
		Category      CodeableConcept  `json:"category"`
		Code          *CodeableConcept `json:"code,omitempty"`
		ValueQuantity *Quantity        `json:"valueQuantity,omitempty"`
	} `json:"supportingInfo,omitempty"`
	Diagnosis []struct {
		Sequence                 int              `json:"sequence"`
		DiagnosisCodeableConcept *CodeableConcept `json:"diagnosisCodeableConcept,omitempty"`
	} `json:"diagnosis,omitempty"`
	Insurance []struct {
		Sequence   int       `json:"sequence"`
		Focal      bool      `json:"focal"`
		Coverage   Reference `json:"coverage"`
		PreAuthRef []string  `json:"preAuthRef,omitempty"`
	} `json:"insurance,omitempty"`
	Item  []Item `json:"item,omitempty"`
	Total *Money `json:"total,omitempty"`
}

// Item is one Claim.item.
type Item struct {
	Sequence                int               `json:"sequence"`
	CareTeamSequence        []int             `json:"careTeamSequence,omitempty"`
	DiagnosisSequence       []int             `json:"diagnosisSequence,omitempty"`
	InformationSequence     []int             `json:"informationSequence,omitempty"`
	Category                *CodeableConcept  `json:"category,omitempty"`
	ProductOrService        CodeableConcept   `json:"productOrService"`
	Modifier                []CodeableConcept `json:"modifier,omitempty"`
	ProgramCode             []CodeableConcept `json:"programCode,omitempty"`
	ServicedDate            string            `json:"servicedDate,omitempty"`
	LocationCodeableConcept *CodeableConcept  `json:"locationCodeableConcept,omitempty"`
	Quantity                *Quantity         `json:"quantity,omitempty"`
	UnitPrice               *Money            `json:"unitPrice,omitempty"`
	Net                     *Money            `json:"net,omitempty"`
}

// Code returns the item's (system, code): the first CPT or HCPCS coding.
func (it *Item) Code() (system, code string) {
	for _, c := range it.ProductOrService.Coding {
		if c.System == CodeSystemURI["cpt"] || c.System == CodeSystemURI["hcpcs"] {
			return c.System, c.Code
		}
	}
	return "", ""
}

// Modifiers returns the item's modifier codes in order.
func (it *Item) Modifiers() []string {
	var out []string
	for _, m := range it.Modifier {
		for _, c := range m.Coding {
			if c.Code != "" {
				out = append(out, c.Code)
				break
			}
		}
	}
	return out
}

// Date is the item's date of service (zero when absent or malformed).
func (it *Item) Date() time.Time {
	t, _ := time.Parse(time.DateOnly, it.ServicedDate)
	return t
}

// Amount is the item's charge: net, else unitPrice × quantity, else 0.
func (it *Item) Amount() float64 {
	if it.Net != nil && it.Net.Value != nil {
		return *it.Net.Value
	}
	if it.UnitPrice != nil && it.UnitPrice.Value != nil {
		q := 1.0
		if it.Quantity != nil && it.Quantity.Value != nil {
			q = *it.Quantity.Value
		}
		return *it.UnitPrice.Value * q
	}
	return 0
}

// Units is the item's quantity (0 when absent).
func (it *Item) Units() float64 {
	if it.Quantity == nil || it.Quantity.Value == nil {
		return 0
	}
	return *it.Quantity.Value
}

// FocalCoverage returns the focal insurance's coverage reference and its preAuthRefs.
func (c *Claim) FocalCoverage() (ref string, preAuth []string) {
	for _, in := range c.Insurance {
		if in.Focal {
			return in.Coverage.Reference, in.PreAuthRef
		}
	}
	if len(c.Insurance) > 0 {
		return c.Insurance[0].Coverage.Reference, c.Insurance[0].PreAuthRef
	}
	return "", nil
}

// DiagnosisCodes returns the ICD-10-CM codes by diagnosis sequence.
func (c *Claim) DiagnosisCodes() map[int]string {
	out := map[int]string{}
	for _, d := range c.Diagnosis {
		out[d.Sequence] = d.DiagnosisCodeableConcept.Code(ICD10CM)
	}
	return out
}

// CareTeamRole returns the careTeam provider with the role (claimcareteamrole code).
func (c *Claim) CareTeamRole(role string) *Reference {
	for i := range c.CareTeam {
		if c.CareTeam[i].Role.Has(CareTeamRoleSystem, role) {
			return &c.CareTeam[i].Provider
		}
	}
	return nil
}

// PatientRef is the patient reference ("Patient/id"), trimmed of a base URL.
func (c *Claim) PatientRef() string {
	if c.Patient == nil {
		return ""
	}
	return c.Patient.Reference
}

// Organization, Patient, Coverage, Practitioner, ServiceRequest and Task: the parts used.

type Organization struct {
	ID         string       `json:"id"`
	Identifier []Identifier `json:"identifier,omitempty"`
	Active     *bool        `json:"active,omitempty"`
	Name       string       `json:"name,omitempty"`
	PartOf     *Reference   `json:"partOf,omitempty"`
	Telecom    []struct {
		System string `json:"system,omitempty"`
		Value  string `json:"value,omitempty"`
	} `json:"telecom,omitempty"`
	Address []Address `json:"address,omitempty"`
}

type Address struct {
	Line       []string `json:"line,omitempty"`
	City       string   `json:"city,omitempty"`
	State      string   `json:"state,omitempty"`
	PostalCode string   `json:"postalCode,omitempty"`
}

type HumanName struct {
	Family string   `json:"family,omitempty"`
	Given  []string `json:"given,omitempty"`
}

type Patient struct {
	ID         string       `json:"id"`
	Identifier []Identifier `json:"identifier,omitempty"`
	Name       []HumanName  `json:"name,omitempty"`
	BirthDate  string       `json:"birthDate,omitempty"`
	Gender     string       `json:"gender,omitempty"`
	Address    []Address    `json:"address,omitempty"`
}

type Practitioner struct {
	ID         string       `json:"id"`
	Identifier []Identifier `json:"identifier,omitempty"`
	Name       []HumanName  `json:"name,omitempty"`
}

type Coverage struct {
	ID           string       `json:"id"`
	Identifier   []Identifier `json:"identifier,omitempty"`
	Status       string       `json:"status,omitempty"`
	SubscriberID string       `json:"subscriberId,omitempty"`
	Beneficiary  Reference    `json:"beneficiary"`
	Period       *Period      `json:"period,omitempty"`
	Payor        []Reference  `json:"payor,omitempty"`
}

type ServiceRequest struct {
	ID                 string            `json:"id"`
	Status             string            `json:"status,omitempty"`
	Subject            Reference         `json:"subject"`
	Code               *CodeableConcept  `json:"code,omitempty"`
	Category           []CodeableConcept `json:"category,omitempty"`
	OccurrencePeriod   *Period           `json:"occurrencePeriod,omitempty"`
	OccurrenceDateTime string            `json:"occurrenceDateTime,omitempty"`
	AuthoredOn         string            `json:"authoredOn,omitempty"`
}

type Task struct {
	ID              string     `json:"id"`
	Status          string     `json:"status,omitempty"`
	Focus           *Reference `json:"focus,omitempty"`
	Owner           *Reference `json:"owner,omitempty"`
	AuthoredOn      string     `json:"authoredOn,omitempty"`
	ExecutionPeriod *Period    `json:"executionPeriod,omitempty"`
}

// NPI returns the NPI among identifiers ("" if none).
func NPI(ids []Identifier) string {
	for _, id := range ids {
		if id.System == NPISystem {
			return id.Value
		}
	}
	return ""
}

// CIN returns the Medi-Cal CIN among identifiers ("" if none).
func CIN(ids []Identifier) string {
	for _, id := range ids {
		if id.System == CINSystem {
			return id.Value
		}
	}
	return ""
}

// refID returns the id of a "Type/id" reference of the given type ("" otherwise).
func refID(ref, typ string) string {
	if i := strings.LastIndex(ref, typ+"/"); i >= 0 && (i == 0 || ref[i-1] == '/') {
		id := ref[i+len(typ)+1:]
		if j := strings.IndexByte(id, '/'); j >= 0 {
			id = id[:j] // Type/id/_history/n
		}
		return id
	}
	return ""
}

// parseDay reads a FHIR date or dateTime as a UTC day (zero when empty or malformed).
func parseDay(s string) time.Time {
	if len(s) >= 10 {
		if t, err := time.Parse(time.DateOnly, s[:10]); err == nil {
			return t
		}
	}
	if len(s) == 7 { // YYYY-MM
		if t, err := time.Parse("2006-01", s); err == nil {
			return t
		}
	}
	if len(s) == 4 {
		if t, err := time.Parse("2006", s); err == nil {
			return t
		}
	}
	return time.Time{}
}

// covers reports whether date falls in the period (an open end is unbounded; an end given
// as a date includes that whole day).
func covers(p *Period, date time.Time) bool {
	if p == nil {
		return true
	}
	if s := parseDay(p.Start); !s.IsZero() && date.Before(s) {
		return false
	}
	if e := parseDay(p.End); !e.IsZero() && date.After(e) {
		return false
	}
	return true
}
