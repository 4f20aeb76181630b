// Package profiles will hold the CalAIM StructureDefinitions, their JSON Schemas, the
// terminology and the profile validator (issue 6). Base R4 validation lives in internal/r4.
package profiles
