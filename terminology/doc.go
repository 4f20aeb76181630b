// Package terminology serves the CalAIM code systems and value sets (FHIR R4 terminology
// module, https://hl7.org/fhir/R4/terminology-module.html): the CalAIM services with their
// HCPCS/CPT + modifier billing mappings, ECM Populations of Focus, SDOH Z-codes with the dates
// they are billable, SDOHCC categories, CHW billing codes and the LOINC codes of SDOH screeners.
//
// The codes are data, not Go: data/*.json are FHIR CodeSystem and ValueSet resources embedded
// into the binary, and Load lays a deployment's own files over them (a plan's confirmed
// billing table replaces the UNVERIFIED one shipped here). Concepts whose values the project
// could not verify carry the property unverified=true.
//
// The package implements $expand, $validate-code and $lookup over that set, plus the lookups
// other packages need: which billing codes belong to which CalAIM service (ServicesFor,
// BillingFor) and whether a code is billable on a date of service (ActiveOn).
package terminology
