// Package patch applies the two PATCH formats of the FHIR R4 patch interaction
// (https://hl7.org/fhir/R4/http.html#patch) to a resource held as decoded JSON
// (map[string]any from encoding/json with UseNumber, as resources.Service decodes bodies):
//
//   - JSON applies a JSON Patch, RFC 6902 (https://www.rfc-editor.org/rfc/rfc6902), whose paths
//     are JSON Pointers, RFC 6901 (https://www.rfc-editor.org/rfc/rfc6901).
//   - FHIRPath applies a FHIRPath Patch (https://hl7.org/fhir/R4/fhirpatch.html): a Parameters
//     resource of "operation" parameters with parts type, path, name, value, index, source and
//     destination.
//
// Both are pure: they deep-copy the document first and never modify their arguments, apply the
// operations in order and atomically (an error returns no document), keep json.Number values
// as json.Number, and never panic. They do not validate the result against R4; the caller
// validates the patched resource as it would an update body (and decides whether a patch may
// change resourceType, id or meta).
//
// # Errors
//
// Errors are *resources.Error. A patch document that is malformed whatever the resource it is
// applied to is KindBadRequest (400); every operation is checked before any is applied. An
// operation that is well-formed but cannot be applied to this resource (a path that selects
// nothing, an index out of range, a failed JSON Patch "test") is KindUnprocessable (422). A
// failed "test" is deliberately not 412 Precondition Failed: that status belongs to version
// preconditions (If-Match), while RFC 5789 §2.2 classes a patch that cannot be applied to the
// resource's current content as unprocessable.
//
// # Supported FHIRPath subset
//
// FHIRPath Patch paths may use this subset of FHIRPath (http://hl7.org/fhirpath/N1/); any other
// syntax is a 400 "unsupported FHIRPath":
//
//   - an optional root type name, which must be the resource's type (or Resource or
//     DomainResource): "Patient.name"; a path may also start at an element: "name";
//   - element names, including `backtick-delimited` names; a name selects every item of a
//     repeating element, and a choice element by its FHIRPath name ("Observation.value" finds
//     valueQuantity) or by its JSON name ("Observation.valueQuantity");
//   - indexers [n] (0-based; out of range selects nothing): "Patient.name[0].given[1]";
//   - first() and last();
//   - where(criterion) where the criterion is a relative path of element names compared with =
//     to a string ('...' with FHIRPath escapes), integer or decimal, or boolean literal:
//     "Patient.telecom.where(system='phone')", "Task.input.where(type.text='x').value".
//     As in FHIRPath, the comparison is true only when the relative path selects exactly one
//     value equal to the literal.
//
// Not supported: other functions (exists(), ofType(), resolve(), extension(url), ...),
// operators other than = inside where(), and, or, $this, environment variables (%resource),
// and type expressions.
//
// # FHIRPath Patch semantics
//
//   - add: the path selects one element (an object); name is added to it with the value. A
//     repeating element that exists gets the value appended; one that does not exist yet becomes
//     a one-item array when it repeats (see Schema), else a single value. A single-valued
//     element that already has a value is a 422 (use replace).
//   - insert: the path names a list (it ends with an element name and what precedes it selects
//     one object); the value is inserted at index, 0 ≤ index ≤ length. A list that is absent
//     counts as empty, so index 0 creates it.
//   - delete: the path selects at most one element, which is removed; selecting nothing is a
//     no-op. An array left empty is removed, as FHIR JSON has no empty arrays.
//   - replace: the path selects exactly one element, which is replaced by the value; the
//     primitive's id and extensions ("_birthDate") go with it. A choice element takes the type
//     of the new value: replacing "Observation.value" (valueString) with valueQuantity leaves
//     valueQuantity.
//   - move: the path names an existing list; the item at source moves so that it ends at
//     destination (both 0-based and less than the length).
//
// Operations that change a list of primitives keep the parallel array of their ids and
// extensions ("_given") aligned.
//
// A value is taken from the "value" part: value[x] as it is (valueString, valueCode,
// valueBoolean, valueInteger and valueDecimal give the JSON primitive, json.Number kept;
// valueCoding, valueCodeableConcept, valueReference, valueIdentifier, ... give the object),
// a "resource" as the resource, or, with neither, its nested parts as an object whose members
// are the part names (recursively); a name given more than once becomes an array, and so does
// one the Schema says repeats.
package patch
