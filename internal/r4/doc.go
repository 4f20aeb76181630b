// Package r4 parses and validates one FHIR R4 (4.0.1) resource in JSON form
// (https://hl7.org/fhir/R4/json.html) against the base specification, using the JSON
// unmarshaller of github.com/google/fhir/go with its extended validation: unknown elements,
// JSON value types, primitive formats, codes of required bindings, array cardinality, required
// elements and reference target types, including inside contained and Bundle entry resources.
// Validate reports a body that is not a resource at all as a bad request, and every problem
// found in a resource as one OperationOutcome issue with a FHIRPath expression such as
// "Patient.name[0].given[1]". It checks no profiles, invariants (FHIRPath constraints) or
// terminology beyond the codes google/fhir builds into its R4 protos.
package r4
