package resources

import (
	"slices"

	"github.com/calaimfhir/calaimfhir/profiles"
)

// Types lists the R4 resource types this server stores, in the order the CapabilityStatement
// shows them.
var Types = []string{
	"Patient", "ServiceRequest", "Task", "Consent", "Claim", "ClaimResponse", "Coverage",
	"Organization", "Practitioner", "PractitionerRole", "Location", "HealthcareService",
	"Encounter", "Observation", "Condition", "Procedure", "Goal", "Questionnaire",
	"QuestionnaireResponse", "Group", "RelatedPerson", "DocumentReference", "Device",
}

var typeSet = func() map[string]bool {
	m := make(map[string]bool, len(Types))
	for _, t := range Types {
		m[t] = true
	}
	return m
}()

// Supported reports whether typ is a stored resource type.
func Supported(typ string) bool { return typeSet[typ] }

// ValidID reports whether id matches the R4 id datatype, [A-Za-z0-9\-\.]{1,64}. (A loop, not
// the regular expression: every read and every reference checks an id, and the expression was
// 1.3% of the CPU of reads by id.)
func ValidID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// ParamType is a SearchParameter type (http://hl7.org/fhir/search-param-type).
type ParamType string

const (
	ParamToken     ParamType = "token"
	ParamReference ParamType = "reference"
	ParamURI       ParamType = "uri"
	ParamString    ParamType = "string"
	ParamDate      ParamType = "date"
	ParamNumber    ParamType = "number"
	ParamQuantity  ParamType = "quantity"
	ParamComposite ParamType = "composite"
	ParamSpecial   ParamType = "special"
)

// Param defines one search parameter of a type: where its values are in the resource and,
// for references, which target types it follows.
type Param struct {
	Name    string
	Type    ParamType
	Paths   []string // dotted element paths below the resource; arrays are walked
	Targets []string // reference params: accepted target types (empty = any)
	Doc     string
	// Local marks a parameter R4 does not define: this server's own (its definition URL is
	// under the project's canonical base).
	Local bool
}

// Definition is the canonical URL of the spec's SearchParameter for (typ, name).
func (p Param) Definition(typ string) string {
	switch p.Name {
	case "_id", "_lastUpdated", "_tag", "_profile", "_security", "_source":
		return "http://hl7.org/fhir/SearchParameter/Resource" + p.Name
	}
	if p.Local {
		return profiles.Base + "/SearchParameter/" + typ + "-" + p.Name
	}
	if slices.Contains(clinicalCommon[p.Name], typ) {
		return "http://hl7.org/fhir/SearchParameter/clinical-" + p.Name
	}
	if slices.Contains(individualCommon[p.Name], typ) {
		return "http://hl7.org/fhir/SearchParameter/individual-" + p.Name
	}
	return "http://hl7.org/fhir/SearchParameter/" + typ + "-" + p.Name
}

// individualCommon are the parameters R4 defines once for people (individual-email, ...), with
// the types among ours that use the shared definition.
var individualCommon = func() map[string][]string {
	people := []string{"Patient", "Practitioner", "RelatedPerson"}
	m := map[string][]string{
		"birthdate": {"Patient", "RelatedPerson"},
		"family":    {"Patient", "Practitioner"},
		"given":     {"Patient", "Practitioner"},
		"email":     append(slices.Clone(people), "PractitionerRole"),
		"phone":     append(slices.Clone(people), "PractitionerRole"),
		"telecom":   append(slices.Clone(people), "PractitionerRole"),
	}
	for _, n := range []string{"address", "address-city", "address-country", "address-postalcode", "address-state", "address-use", "gender", "phonetic"} {
		m[n] = people
	}
	return m
}()

// clinicalCommon are the parameters R4 defines once for several types (clinical-patient, ...),
// with the types among ours that use the shared definition.
var clinicalCommon = map[string][]string{
	"identifier": {"Condition", "DocumentReference", "Encounter", "Goal", "Observation", "Procedure", "ServiceRequest"},
	"patient":    {"Condition", "Consent", "DocumentReference", "Encounter", "Goal", "Observation", "Procedure", "ServiceRequest"},
	"code":       {"Condition", "Observation", "Procedure", "ServiceRequest"},
	"date":       {"Consent", "Encounter", "Observation", "Procedure"},
	"encounter":  {"Observation", "Procedure", "ServiceRequest"},
	"type":       {"DocumentReference", "Encounter"},
}

func tok(name string, paths ...string) Param {
	return Param{Name: name, Type: ParamToken, Paths: paths}
}
func ref(name string, targets []string, paths ...string) Param {
	return Param{Name: name, Type: ParamReference, Paths: paths, Targets: targets}
}

var (
	anyTarget = []string(nil)
	patientT  = []string{"Patient"}
)

// commonParams apply to every type and read meta.
var commonParams = []Param{
	tok("_tag", "meta.tag"),
	tok("_security", "meta.security"),
	{Name: "_profile", Type: ParamURI, Paths: []string{"meta.profile"}},
	{Name: "_source", Type: ParamURI, Paths: []string{"meta.source"}},
}

// typeParams are the indexed parameters per type: those the REST core needs (identifier,
// patient/subject, status, Task owner/requester) and the other token and reference
// parameters R4 defines for these types.
var typeParams = map[string][]Param{
	"Patient": {
		tok("identifier", "identifier"), tok("active", "active"), tok("gender", "gender"),
		ref("general-practitioner", anyTarget, "generalPractitioner"),
		ref("organization", anyTarget, "managingOrganization"),
		ref("link", anyTarget, "link.other"),
	},
	"ServiceRequest": {
		tok("identifier", "identifier"), ref("patient", patientT, "subject"), ref("subject", anyTarget, "subject"),
		tok("status", "status"), tok("intent", "intent"), tok("priority", "priority"),
		tok("category", "category"), tok("code", "code"), ref("requester", anyTarget, "requester"),
		ref("performer", anyTarget, "performer"), ref("encounter", anyTarget, "encounter"),
		ref("based-on", anyTarget, "basedOn"), ref("replaces", anyTarget, "replaces"),
		tok("requisition", "requisition"), tok("performer-type", "performerType"),
		ref("specimen", anyTarget, "specimen"), tok("body-site", "bodySite"),
	},
	"Task": {
		tok("identifier", "identifier"), ref("patient", patientT, "for"), ref("subject", anyTarget, "for"),
		tok("status", "status"), tok("intent", "intent"), tok("priority", "priority"),
		tok("code", "code"), tok("business-status", "businessStatus"),
		ref("owner", anyTarget, "owner"), ref("requester", anyTarget, "requester"),
		ref("focus", anyTarget, "focus"), ref("based-on", anyTarget, "basedOn"),
		ref("part-of", anyTarget, "partOf"), ref("encounter", anyTarget, "encounter"),
		tok("group-identifier", "groupIdentifier"), tok("performer", "performerType"),
	},
	"Consent": {
		tok("identifier", "identifier"), ref("patient", patientT, "patient"), tok("status", "status"),
		tok("category", "category"), tok("scope", "scope"), tok("action", "provision.action"),
		ref("actor", anyTarget, "provision.actor.reference"), ref("consentor", anyTarget, "performer"),
		ref("organization", anyTarget, "organization"), tok("purpose", "provision.purpose"),
		tok("security-label", "provision.securityLabel"), ref("data", anyTarget, "provision.data.reference"),
		ref("source-reference", anyTarget, "sourceReference"),
	},
	"Claim": {
		tok("identifier", "identifier"), ref("patient", patientT, "patient"), tok("status", "status"),
		tok("use", "use"), ref("provider", anyTarget, "provider"), ref("insurer", anyTarget, "insurer"),
		ref("enterer", anyTarget, "enterer"), ref("care-team", anyTarget, "careTeam.provider"),
		ref("payee", anyTarget, "payee.party"), ref("facility", anyTarget, "facility"),
		ref("encounter", anyTarget, "item.encounter"), ref("detail-udi", anyTarget, "item.detail.udi"),
		ref("item-udi", anyTarget, "item.udi"), ref("procedure-udi", anyTarget, "procedure.udi"),
		ref("subdetail-udi", anyTarget, "item.detail.subDetail.udi"),
	},
	"ClaimResponse": {
		tok("identifier", "identifier"), ref("patient", patientT, "patient"), tok("status", "status"),
		tok("use", "use"), tok("outcome", "outcome"), ref("request", anyTarget, "request"),
		ref("requestor", anyTarget, "requestor"), ref("insurer", anyTarget, "insurer"),
	},
	"Coverage": {
		tok("identifier", "identifier"), ref("patient", patientT, "beneficiary"),
		ref("beneficiary", anyTarget, "beneficiary"), ref("subscriber", anyTarget, "subscriber"),
		ref("payor", anyTarget, "payor"), ref("policy-holder", anyTarget, "policyHolder"),
		tok("status", "status"), tok("type", "type"), tok("class-type", "class.type"),
	},
	"Organization": {
		tok("identifier", "identifier"), tok("active", "active"), tok("type", "type"),
		ref("partof", anyTarget, "partOf"), ref("endpoint", anyTarget, "endpoint"),
	},
	"Practitioner": {
		tok("identifier", "identifier"), tok("active", "active"), tok("gender", "gender"),
		tok("communication", "communication"),
	},
	"PractitionerRole": {
		tok("identifier", "identifier"), tok("active", "active"), tok("role", "code"),
		tok("specialty", "specialty"), ref("practitioner", anyTarget, "practitioner"),
		ref("organization", anyTarget, "organization"), ref("location", anyTarget, "location"),
		ref("service", anyTarget, "healthcareService"), ref("endpoint", anyTarget, "endpoint"),
	},
	"Location": {
		tok("identifier", "identifier"), tok("status", "status"), tok("operational-status", "operationalStatus"),
		tok("type", "type"), ref("organization", anyTarget, "managingOrganization"),
		ref("partof", anyTarget, "partOf"), ref("endpoint", anyTarget, "endpoint"),
		{Name: "near", Type: ParamSpecial, Paths: []string{"position"}},
	},
	"HealthcareService": {
		tok("identifier", "identifier"), tok("active", "active"), ref("organization", anyTarget, "providedBy"),
		ref("location", anyTarget, "location"), tok("service-category", "category"),
		tok("service-type", "type"), tok("specialty", "specialty"), tok("program", "program"),
		tok("characteristic", "characteristic"), ref("coverage-area", anyTarget, "coverageArea"),
		ref("endpoint", anyTarget, "endpoint"),
	},
	"Encounter": {
		tok("identifier", "identifier"), ref("patient", patientT, "subject"), ref("subject", anyTarget, "subject"),
		tok("status", "status"), tok("class", "class"), tok("type", "type"),
		ref("participant", anyTarget, "participant.individual"),
		ref("practitioner", []string{"Practitioner"}, "participant.individual"),
		tok("participant-type", "participant.type"), ref("service-provider", anyTarget, "serviceProvider"),
		ref("based-on", anyTarget, "basedOn"), ref("episode-of-care", anyTarget, "episodeOfCare"),
		ref("reason-reference", anyTarget, "reasonReference"), tok("reason-code", "reasonCode"),
		ref("part-of", anyTarget, "partOf"), ref("account", anyTarget, "account"),
		ref("appointment", anyTarget, "appointment"), ref("diagnosis", anyTarget, "diagnosis.condition"),
		ref("location", anyTarget, "location.location"), tok("special-arrangement", "hospitalization.specialArrangement"),
	},
	"Observation": {
		tok("identifier", "identifier"), ref("patient", patientT, "subject"), ref("subject", anyTarget, "subject"),
		tok("status", "status"), tok("code", "code"), tok("category", "category"),
		ref("encounter", anyTarget, "encounter"), ref("performer", anyTarget, "performer"),
		ref("focus", anyTarget, "focus"), ref("has-member", anyTarget, "hasMember"),
		ref("derived-from", anyTarget, "derivedFrom"), ref("part-of", anyTarget, "partOf"),
		ref("based-on", anyTarget, "basedOn"), ref("specimen", anyTarget, "specimen"),
		ref("device", anyTarget, "device"), tok("value-concept", "valueCodeableConcept"),
		tok("data-absent-reason", "dataAbsentReason"), tok("method", "method"),
		tok("component-code", "component.code"), tok("combo-code", "code", "component.code"),
		tok("component-value-concept", "component.valueCodeableConcept"),
		tok("combo-value-concept", "valueCodeableConcept", "component.valueCodeableConcept"),
		tok("component-data-absent-reason", "component.dataAbsentReason"),
		tok("combo-data-absent-reason", "dataAbsentReason", "component.dataAbsentReason"),
	},
	"Condition": {
		tok("identifier", "identifier"), ref("patient", patientT, "subject"), ref("subject", anyTarget, "subject"),
		tok("clinical-status", "clinicalStatus"), tok("verification-status", "verificationStatus"),
		tok("category", "category"), tok("code", "code"), tok("severity", "severity"),
		tok("body-site", "bodySite"), tok("stage", "stage.summary"), tok("evidence", "evidence.code"),
		ref("evidence-detail", anyTarget, "evidence.detail"), ref("encounter", anyTarget, "encounter"),
		ref("asserter", anyTarget, "asserter"),
	},
	"Procedure": {
		tok("identifier", "identifier"), ref("patient", patientT, "subject"), ref("subject", anyTarget, "subject"),
		tok("status", "status"), tok("code", "code"), tok("category", "category"),
		ref("performer", anyTarget, "performer.actor"), ref("encounter", anyTarget, "encounter"),
		ref("based-on", anyTarget, "basedOn"), ref("part-of", anyTarget, "partOf"),
		ref("location", anyTarget, "location"), tok("reason-code", "reasonCode"),
		ref("reason-reference", anyTarget, "reasonReference"),
	},
	"Goal": {
		tok("identifier", "identifier"), ref("patient", patientT, "subject"), ref("subject", anyTarget, "subject"),
		tok("lifecycle-status", "lifecycleStatus"), tok("achievement-status", "achievementStatus"),
		tok("category", "category"),
	},
	"Questionnaire": {
		tok("identifier", "identifier"), tok("status", "status"), tok("code", "item.code"),
		tok("context", "useContext.valueCodeableConcept"), tok("jurisdiction", "jurisdiction"),
		tok("version", "version"), {Name: "url", Type: ParamURI, Paths: []string{"url"}},
		uri("definition", "item.definition"),
	},
	"QuestionnaireResponse": {
		tok("identifier", "identifier"), ref("patient", patientT, "subject"), ref("subject", anyTarget, "subject"),
		tok("status", "status"), ref("questionnaire", anyTarget, "questionnaire"),
		ref("author", anyTarget, "author"), ref("encounter", anyTarget, "encounter"),
		ref("based-on", anyTarget, "basedOn"), ref("part-of", anyTarget, "partOf"),
		ref("source", anyTarget, "source"),
	},
	"Group": {
		tok("identifier", "identifier"), tok("type", "type"), tok("code", "code"), tok("actual", "actual"),
		ref("member", anyTarget, "member.entity"), ref("managing-entity", anyTarget, "managingEntity"),
		tok("characteristic", "characteristic.code"), tok("exclude", "characteristic.exclude"),
	},
	"RelatedPerson": {
		tok("identifier", "identifier"), ref("patient", patientT, "patient"), tok("active", "active"),
		tok("gender", "gender"), tok("relationship", "relationship"),
	},
	"DocumentReference": {
		tok("identifier", "identifier", "masterIdentifier"), ref("patient", patientT, "subject"),
		ref("subject", anyTarget, "subject"), tok("status", "status"), tok("type", "type"),
		tok("category", "category"), ref("author", anyTarget, "author"), ref("custodian", anyTarget, "custodian"),
		ref("authenticator", anyTarget, "authenticator"), ref("encounter", anyTarget, "context.encounter"),
		ref("related", anyTarget, "context.related"), ref("relatesto", anyTarget, "relatesTo.target"),
		tok("security-label", "securityLabel"), tok("format", "content.format"),
		tok("language", "content.attachment.language"), tok("contenttype", "content.attachment.contentType"),
		tok("facility", "context.facilityType"), tok("setting", "context.practiceSetting"),
		tok("event", "context.event"), tok("relation", "relatesTo.code"),
		uri("location", "content.attachment.url"),
	},
	"Device": {
		tok("identifier", "identifier"), ref("patient", patientT, "patient"), tok("status", "status"),
		tok("type", "type"), ref("organization", anyTarget, "owner"), ref("location", anyTarget, "location"),
		{Name: "url", Type: ParamURI, Paths: []string{"url"}},
	},
}

func str(name string, paths ...string) Param {
	return Param{Name: name, Type: ParamString, Paths: paths}
}
func date(name string, paths ...string) Param {
	return Param{Name: name, Type: ParamDate, Paths: paths}
}
func qty(name string, paths ...string) Param {
	return Param{Name: name, Type: ParamQuantity, Paths: paths}
}
func num(name string, paths ...string) Param {
	return Param{Name: name, Type: ParamNumber, Paths: paths}
}
func uri(name string, paths ...string) Param { return Param{Name: name, Type: ParamURI, Paths: paths} }

// local marks a parameter as this server's own (see Param.Local).
func local(p Param) Param { p.Local = true; return p }

var nameParts = []string{"name"}

// valueParams are the string, date, number and quantity parameters R4 defines for these types
// (choice elements are listed by their concrete JSON names).
var valueParams = map[string][]Param{
	"Patient": {
		str("name", "name"), str("family", "name.family"), str("given", "name.given"),
		str("address", "address"), str("address-city", "address.city"), str("address-state", "address.state"),
		str("address-postalcode", "address.postalCode"), str("address-country", "address.country"),
		tok("address-use", "address.use"), tok("telecom", "telecom"), tok("phone", "telecom[system=phone]"), tok("email", "telecom[system=email]"),
		tok("language", "communication.language"), date("birthdate", "birthDate"),
		date("death-date", "deceasedDateTime"), tok("deceased", "deceasedBoolean"),
		str("phonetic", "name"),
	},
	"ServiceRequest": {
		date("authored", "authoredOn"), date("occurrence", "occurrenceDateTime", "occurrencePeriod"),
		ref("instantiates-canonical", anyTarget, "instantiatesCanonical"), uri("instantiates-uri", "instantiatesUri"),
		local(ref("supporting-info", anyTarget, "supportingInfo")), local(ref("reason-reference", anyTarget, "reasonReference")),
		local(tok("reason-code", "reasonCode")),
	},
	"Task": {
		date("authored-on", "authoredOn"), date("modified", "lastModified"), date("period", "executionPeriod"),
		local(ref("output-reference", anyTarget, "output.valueReference")),
	},
	"Consent": {
		date("date", "dateTime"), date("period", "provision.period"), local(uri("policy-uri", "policy.uri")),
	},
	"Claim":         {date("created", "created"), tok("priority", "priority")},
	"ClaimResponse": {date("created", "created"), date("payment-date", "payment.date"), str("disposition", "disposition")},
	"Coverage":      {local(date("period", "period")), str("dependent", "dependent"), str("class-value", "class.value")},
	"Organization": {
		str("name", "name", "alias"), str("address", "address"), str("address-city", "address.city"),
		str("address-state", "address.state"), str("address-postalcode", "address.postalCode"), str("phonetic", "name"),
		str("address-country", "address.country"), tok("address-use", "address.use"),
	},
	"Practitioner": {
		str("name", "name"), str("family", "name.family"), str("given", "name.given"), str("address", "address"),
		str("address-city", "address.city"), str("address-state", "address.state"), str("address-postalcode", "address.postalCode"),
		str("address-country", "address.country"), tok("address-use", "address.use"), str("phonetic", "name"),
		tok("telecom", "telecom"), tok("phone", "telecom[system=phone]"), tok("email", "telecom[system=email]"),
	},
	"PractitionerRole": {date("date", "period"), tok("telecom", "telecom"), tok("phone", "telecom[system=phone]"), tok("email", "telecom[system=email]")},
	"Location": {
		str("name", "name", "alias"), str("address", "address"), str("address-city", "address.city"),
		str("address-state", "address.state"), str("address-postalcode", "address.postalCode"),
		str("address-country", "address.country"), tok("address-use", "address.use"),
	},
	"HealthcareService": {str("name", "name")},
	"Encounter": {
		date("date", "period"), qty("length", "length"), date("location-period", "location.period"),
	},
	"Observation": {
		date("date", "effectiveDateTime", "effectivePeriod", "effectiveInstant"),
		qty("value-quantity", "valueQuantity"), date("value-date", "valueDateTime", "valuePeriod"),
		str("value-string", "valueString"), qty("component-value-quantity", "component.valueQuantity"),
		qty("combo-value-quantity", "valueQuantity", "component.valueQuantity"),
	},
	"Condition": {
		date("onset-date", "onsetDateTime", "onsetPeriod"), date("abatement-date", "abatementDateTime", "abatementPeriod"),
		date("recorded-date", "recordedDate"), str("onset-info", "onsetString"), str("abatement-string", "abatementString"),
		qty("onset-age", "onsetAge"), qty("abatement-age", "abatementAge"),
	},
	"Procedure": {date("date", "performedDateTime", "performedPeriod"),
		ref("instantiates-canonical", anyTarget, "instantiatesCanonical"), uri("instantiates-uri", "instantiatesUri")},
	"Goal": {date("start-date", "startDate"), date("target-date", "target.dueDate")},
	"Questionnaire": {
		str("name", "name"), str("title", "title"), str("publisher", "publisher"), str("description", "description"),
		date("date", "date"), date("effective", "effectivePeriod"), tok("context-type", "useContext.code"),
		qty("context-quantity", "useContext.valueQuantity"), tok("subject-type", "subjectType"),
	},
	"QuestionnaireResponse": {date("authored", "authored")},
	"Group": {local(num("quantity", "quantity")),
		tok("value", "characteristic.valueCodeableConcept", "characteristic.valueBoolean")},
	"RelatedPerson": {
		str("name", "name"), str("address", "address"), str("address-city", "address.city"),
		str("address-state", "address.state"), str("address-postalcode", "address.postalCode"),
		date("birthdate", "birthDate"), tok("telecom", "telecom"), tok("phone", "telecom[system=phone]"), tok("email", "telecom[system=email]"),
		str("address-country", "address.country"), tok("address-use", "address.use"), str("phonetic", "name"),
	},
	"DocumentReference": {
		date("date", "date"), date("period", "context.period"), str("description", "description"),
	},
	"Device": {
		str("manufacturer", "manufacturer"), str("model", "modelNumber"), str("device-name", "deviceName.name"),
		str("udi-di", "udiCarrier.deviceIdentifier"), str("udi-carrier", "udiCarrier.carrierHRF"),
	},
}

// Composite parameters defined by R4 for these types: a token, then a token, reference,
// quantity, date or string; the pair must come from the same element (the root, or one entry
// of a repeating element). A composite whose second part lies in several choice forms is
// listed once per form.
type composite struct {
	Name          string
	Element       string // repeating element holding both parts; "" for the resource itself
	First, Second string // paths below Element
	// Kind is the type of the second part (the first is a token); "" means token.
	Kind ParamType
}

var compositeParams = map[string][]composite{
	"Observation": {
		{"code-value-concept", "", "code", "valueCodeableConcept", ""},
		{"component-code-value-concept", "component", "code", "valueCodeableConcept", ""},
		{"combo-code-value-concept", "", "code", "valueCodeableConcept", ""},
		{"combo-code-value-concept", "component", "code", "valueCodeableConcept", ""},
		{"code-value-quantity", "", "code", "valueQuantity", ParamQuantity},
		{"component-code-value-quantity", "component", "code", "valueQuantity", ParamQuantity},
		{"combo-code-value-quantity", "", "code", "valueQuantity", ParamQuantity},
		{"combo-code-value-quantity", "component", "code", "valueQuantity", ParamQuantity},
		{"code-value-date", "", "code", "valueDateTime", ParamDate},
		{"code-value-date", "", "code", "valuePeriod", ParamDate},
		{"code-value-string", "", "code", "valueString", ParamString},
	},
	"Group": {{"characteristic-value", "characteristic", "code", "valueCodeableConcept", ""}},
	"Questionnaire": {
		{"context-type-value", "useContext", "code", "valueCodeableConcept", ""},
		{"context-type-quantity", "useContext", "code", "valueQuantity", ParamQuantity},
	},
	"DocumentReference": {{"relationship", "relatesTo", "code", "target", ParamReference}},
}

// Params returns the indexed parameters of typ (type-specific, then the common ones).
func Params(typ string) []Param {
	return paramsByType[typ]
}

var paramsByType = func() map[string][]Param {
	m := map[string][]Param{}
	for _, typ := range Types {
		ps := append(slices.Clone(typeParams[typ]), valueParams[typ]...)
		ps = append(ps, commonParams...)
		for i, p := range ps {
			if p.Type == ParamReference && p.Targets == nil {
				ps[i].Targets = specTargets(typ, p.Paths)
			}
		}
		m[typ] = ps
	}
	return m
}()

// CompositeNames lists the composite parameters of typ, once each.
func CompositeNames(typ string) []string {
	var out []string
	for _, c := range compositeParams[typ] {
		if !slices.Contains(out, c.Name) {
			out = append(out, c.Name)
		}
	}
	return out
}

// LookupParam finds the parameter name of typ.
func LookupParam(typ, name string) (Param, bool) {
	for _, p := range paramsByType[typ] {
		if p.Name == name {
			return p, true
		}
	}
	for _, c := range compositeParams[typ] {
		if c.Name == name {
			return Param{Name: name, Type: ParamComposite}, true
		}
	}
	return Param{}, false
}

// compositeKind is the type of the second part of the composite name of typ.
func compositeKind(typ, name string) ParamType {
	for _, c := range compositeParams[typ] {
		if c.Name == name && c.Kind != "" {
			return c.Kind
		}
	}
	return ParamToken
}
