// Package profiles holds the CalAIM StructureDefinitions (https://hl7.org/fhir/R4/profiling.html)
// and the validator that enforces them.
//
// definitions/*.json are the profiles and extensions under the canonical base of canon.go, with
// their differentials written by hand; the snapshots are generated at load from the base R4
// element facts (cardinality, types, reference targets) that the google/fhir R4 protos record.
// The Engine interprets the differential: cardinality, fixed and pattern values, bindings
// (checked with the terminology package), reference target types, choice types, the regex
// extension, slicing and extension definitions. Invariants are ElementDefinition.constraints
// whose key names a Go function in invariants.go: google/fhir v0.7.4 has no FHIRPath engine, so
// the FHIRPath expression in the definition documents the rule and the function carries it out.
//
// Base R4 validation lives in internal/r4; server/conformance.go chains the two on writes.
// The package imports no other project package but terminology (resources imports it).
package profiles
