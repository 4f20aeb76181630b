package resources

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
)

// _summary (https://hl7.org/fhir/R4/search.html#summary) needs two facts per resource type that
// the protos this server validates with do not carry: which elements the base definition marks
// isSummary (Σ in the spec's tables), and which are mandatory (min >= 1). They are written
// down here from the R4 (4.0.1) resource definitions. Choice elements end in "[x]" and stand
// for every JSON name value[x] takes (valueQuantity, valueString, ...).
//
// Within a kept element the whole value is kept: the Σ flags of data types (Identifier,
// CodeableConcept, HumanName, Reference, Period, ...) are set on nearly all of their elements,
// so a summary keeps them whole, as most servers do. Backbone elements that are in the summary
// but have children outside it are narrowed by summaryChildren.

// summaryElements are the top-level elements marked Σ, besides id, meta and implicitRules
// (Σ on every resource).
var summaryElements = map[string][]string{
	"Patient": {"identifier", "active", "name", "telecom", "gender", "birthDate", "deceased[x]", "address",
		"managingOrganization", "link"},
	"ServiceRequest": {"identifier", "instantiatesCanonical", "instantiatesUri", "basedOn", "replaces", "requisition",
		"status", "intent", "category", "priority", "doNotPerform", "code", "orderDetail", "quantity[x]", "subject",
		"encounter", "occurrence[x]", "asNeeded[x]", "authoredOn", "requester", "performerType", "performer",
		"locationCode", "locationReference", "reasonCode", "reasonReference", "specimen", "bodySite", "patientInstruction"},
	"Task": {"instantiatesCanonical", "instantiatesUri", "basedOn", "groupIdentifier", "partOf", "status",
		"statusReason", "businessStatus", "intent", "code", "description", "focus", "for", "encounter",
		"executionPeriod", "lastModified", "requester", "owner", "location"},
	"Consent": {"identifier", "status", "scope", "category", "patient", "dateTime", "performer", "organization",
		"source[x]", "policyRule", "verification", "provision"},
	"Claim": {"status", "type", "use", "patient", "billablePeriod", "created", "insurer", "provider", "priority",
		"insurance", "total"},
	"ClaimResponse": {"status", "type", "use", "patient", "created", "insurer", "request", "outcome", "total"},
	"Coverage": {"identifier", "status", "type", "policyHolder", "subscriber", "subscriberId", "beneficiary",
		"dependent", "period", "payor", "order", "network"},
	"Organization": {"identifier", "active", "type", "name", "partOf"},
	"Practitioner": {"identifier", "active", "name", "telecom", "address", "gender", "birthDate"},
	"PractitionerRole": {"identifier", "active", "period", "practitioner", "organization", "code", "specialty",
		"location", "telecom"},
	"Location": {"identifier", "status", "operationalStatus", "name", "description", "mode", "type", "physicalType",
		"managingOrganization"},
	"HealthcareService": {"identifier", "active", "providedBy", "category", "type", "specialty", "location", "name",
		"comment", "photo"},
	"Encounter": {"identifier", "status", "class", "type", "serviceType", "subject", "episodeOfCare", "participant",
		"appointment", "reasonCode", "reasonReference", "diagnosis"},
	"Observation": {"identifier", "basedOn", "partOf", "status", "code", "subject", "focus", "encounter",
		"effective[x]", "issued", "performer", "value[x]", "hasMember", "derivedFrom", "component"},
	"Condition": {"identifier", "clinicalStatus", "verificationStatus", "code", "bodySite", "subject", "encounter",
		"onset[x]", "recordedDate", "recorder", "asserter"},
	"Procedure": {"identifier", "instantiatesCanonical", "instantiatesUri", "basedOn", "partOf", "status",
		"statusReason", "category", "code", "subject", "encounter", "performed[x]", "recorder", "asserter",
		"performer", "location", "reasonCode", "reasonReference", "bodySite", "outcome"},
	"Goal": {"lifecycleStatus", "achievementStatus", "category", "priority", "description", "subject", "start[x]",
		"statusDate", "expressedBy"},
	"Questionnaire": {"url", "identifier", "version", "name", "title", "status", "experimental", "subjectType", "date",
		"publisher", "contact", "useContext", "jurisdiction", "effectivePeriod", "code"},
	"QuestionnaireResponse": {"identifier", "basedOn", "partOf", "questionnaire", "status", "subject", "encounter",
		"authored", "author", "source"},
	"Group": {"identifier", "active", "type", "actual", "code", "name", "quantity", "managingEntity"},
	"RelatedPerson": {"identifier", "active", "patient", "relationship", "name", "telecom", "gender", "birthDate",
		"address"},
	"DocumentReference": {"masterIdentifier", "identifier", "status", "docStatus", "type", "category", "subject",
		"date", "author", "relatesTo", "description", "securityLabel", "content", "context"},
	"Device": {"udiCarrier", "status", "safety"},
}

// summaryChildren narrows Σ backbone elements to their Σ children.
var summaryChildren = map[string]map[string][]string{
	"Observation": {"component": {"code", "value[x]"}},
	"Claim":       {"insurance": {"sequence", "focal", "coverage"}},
	"Device":      {"udiCarrier": {"deviceIdentifier", "carrierAIDC", "carrierHRF"}},
}

// mandatoryElements are the top-level elements with min >= 1.
var mandatoryElements = map[string][]string{
	"ServiceRequest":        {"status", "intent", "subject"},
	"Task":                  {"status", "intent"},
	"Consent":               {"status", "scope", "category"},
	"Claim":                 {"status", "type", "use", "patient", "created", "provider", "priority", "insurance"},
	"ClaimResponse":         {"status", "type", "use", "patient", "created", "insurer", "outcome"},
	"Coverage":              {"status", "beneficiary", "payor"},
	"Encounter":             {"status", "class"},
	"Observation":           {"status", "code"},
	"Condition":             {"subject"},
	"Procedure":             {"status", "subject"},
	"Goal":                  {"lifecycleStatus", "description", "subject"},
	"Questionnaire":         {"status"},
	"QuestionnaireResponse": {"status"},
	"Group":                 {"type", "actual"},
	"RelatedPerson":         {"patient"},
	"DocumentReference":     {"status", "content"},
}

// SummaryElements returns the Σ top-level elements of typ (choice elements as "name[x]").
func SummaryElements(typ string) []string { return summaryElements[typ] }

// MandatoryElements returns the top-level elements of typ with min >= 1.
func MandatoryElements(typ string) []string { return mandatoryElements[typ] }

// Summary modes of _summary that change what each resource shows.
const (
	SummaryTrue = "true" // Σ and mandatory elements
	SummaryText = "text" // text, id, meta and mandatory elements
	SummaryData = "data" // everything but text
)

// matchesElement reports whether the JSON name key is the element name (or, for "x[x]", one
// of its typed forms).
func matchesElement(key, name string) bool {
	if base, ok := strings.CutSuffix(name, "[x]"); ok {
		rest, ok := strings.CutPrefix(key, base)
		return ok && rest != "" && rest[0] >= 'A' && rest[0] <= 'Z'
	}
	return key == name
}

func inElements(key string, names []string) bool {
	return slices.ContainsFunc(names, func(n string) bool { return matchesElement(key, n) })
}

// ShapeResource applies _summary (true, text or data; "" for none) and _elements to one
// resource as served, and marks the result SUBSETTED. Resource-level elements (id, meta,
// implicitRules) and mandatory elements always stay. raw is returned unchanged when nothing
// is asked, or when it cannot be read.
func ShapeResource(raw []byte, summary string, elements []string) []byte {
	if summary == "" && len(elements) == 0 {
		return raw
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var doc map[string]any
	if dec.Decode(&doc) != nil {
		return raw
	}
	typ, _ := doc["resourceType"].(string)
	mandatory := mandatoryElements[typ]
	for k := range doc {
		keep := true
		switch {
		case k == "resourceType" || k == "id" || k == "meta":
		case k == "implicitRules" && summary != SummaryText: // Σ (and a modifier) on every resource
		case inElements(k, mandatory):
		case summary == SummaryTrue:
			keep = inElements(k, summaryElements[typ])
		case summary == SummaryText:
			keep = k == "text"
		case summary == SummaryData && k == "text":
			keep = false
		}
		if keep && len(elements) > 0 && summary != SummaryTrue && summary != SummaryText {
			keep = k == "resourceType" || k == "id" || k == "meta" || inElements(k, mandatory) || slices.Contains(elements, k)
		}
		if !keep {
			delete(doc, k)
		}
	}
	if summary == SummaryTrue {
		for elem, children := range summaryChildren[typ] {
			narrowChildren(doc[elem], children)
		}
	}
	// The result is marked as not the whole resource.
	meta, _ := doc["meta"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
	}
	tags, _ := meta["tag"].([]any)
	meta["tag"] = append(tags, map[string]any{
		"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"})
	doc["meta"] = meta
	out, err := EncodeResource(doc)
	if err != nil {
		return raw
	}
	return out
}

// narrowChildren keeps only the named children (and id, extension-free) of a backbone element
// or of each entry of a repeating one.
func narrowChildren(v any, children []string) {
	switch t := v.(type) {
	case []any:
		for _, e := range t {
			narrowChildren(e, children)
		}
	case map[string]any:
		for k := range t {
			if k != "id" && !inElements(k, children) {
				delete(t, k)
			}
		}
	}
}
