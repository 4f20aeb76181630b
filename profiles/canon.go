package profiles

// Canonical URLs. The project owns the base below; every CalAIM conformance resource
// (StructureDefinition, CodeSystem, ValueSet, NamingSystem) lives under it, so a reader can tell
// project definitions from HL7 ones at a glance. Changing the base is a breaking change for
// every stored resource that claims a profile: do not.
const (
	// Base is the canonical base of the CalAIM definitions.
	Base = "https://calaimfhir.org/fhir"

	// CINSystem identifies Medi-Cal Client Index Numbers (8 digits + 1 letter). DHCS has not
	// published a FHIR system URI for the CIN, so the project defines one (domain brief).
	CINSystem = Base + "/sid/medi-cal-cin"
	// ExternalReferralIDSystem identifies referral ids assigned by a referring organization's
	// own system when no better system is known.
	ExternalReferralIDSystem = Base + "/sid/external-referral-id"
	// CHWIDSystem identifies community health workers by the id a CBO gives them.
	CHWIDSystem = Base + "/sid/chw-id"
	// NPISystem is the US National Provider Identifier system.
	NPISystem = "http://hl7.org/fhir/sid/us-npi"
	// ICD10CMSystem is ICD-10-CM, dotted form.
	ICD10CMSystem = "http://hl7.org/fhir/sid/icd-10-cm"
	// CPTSystem and HCPCSSystem code billable services.
	CPTSystem   = "http://www.ama-assn.org/go/cpt"
	HCPCSSystem = "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
	// LOINCSystem and SNOMEDSystem code screenings and findings.
	LOINCSystem  = "http://loinc.org"
	SNOMEDSystem = "http://snomed.info/sct"
	// SDOHCCCategorySystem holds the Gravity SDOH domain codes (food-insecurity, ...).
	SDOHCCCategorySystem = "http://hl7.org/fhir/us/sdoh-clinicalcare/CodeSystem/SDOHCC-CodeSystemTemporaryCodes"

	// Project code systems.
	ProgramSystem           = Base + "/CodeSystem/calaim-program"          // ecm, community-supports, chw
	ServiceSystem           = Base + "/CodeSystem/calaim-service"          // the CalAIM services (CS 1-15, ECM, CHW services)
	PopulationOfFocusSystem = Base + "/CodeSystem/ecm-population-of-focus" // 1a, 1b, 2 .. 9
	ReferralStatusSystem    = Base + "/CodeSystem/referral-status"         // DHCS closed-loop referral status (Task.businessStatus)
	ClosureReasonSystem     = Base + "/CodeSystem/referral-closure-reason" // DHCS reason for referral (loop) closure
	CHWServiceTypeSystem    = Base + "/CodeSystem/chw-service-type"        // health-education, health-navigation, ...

	// Extensions.
	ExtProgram           = Base + "/StructureDefinition/calaim-program"
	ExtPopulationOfFocus = Base + "/StructureDefinition/ecm-population-of-focus"
	// ExtHomelessness marks an address as where a member experiencing homelessness can be found.
	ExtHomelessness = Base + "/StructureDefinition/homelessness-indicator"
	// POSSystem is the CMS place of service code set (Claim.item.locationCodeableConcept).
	POSSystem = "https://www.cms.gov/Medicare/Coding/place-of-service-codes/Place_of_Service_Code_Set"

	// Profiles.
	PatientProfile        = Base + "/StructureDefinition/calaim-patient"
	ServiceRequestProfile = Base + "/StructureDefinition/calaim-servicerequest"
	TaskProfile           = Base + "/StructureDefinition/calaim-task"
	ConsentProfile        = Base + "/StructureDefinition/calaim-consent"
	ClaimProfile          = Base + "/StructureDefinition/calaim-claim"
	EncounterProfile      = Base + "/StructureDefinition/calaim-encounter"
	ConditionProfile      = Base + "/StructureDefinition/calaim-condition"
	ScreeningProfile      = Base + "/StructureDefinition/calaim-observation-screening-response"
	CoverageProfile       = Base + "/StructureDefinition/calaim-coverage"

	// TenantTagSystem: the server stamps meta.tag {system: TenantTagSystem, code:
	// "Organization/<id>"} on every resource it stores, naming the organization whose caller
	// wrote it. Clients cannot set or change it.
	TenantTagSystem = Base + "/sid/tenant"
)
