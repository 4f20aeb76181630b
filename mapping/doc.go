// Package mapping holds the pure conversions from the files CalAIM partners exchange today
// (plan referral forms, SDOH screenings, CHW encounter logs, the DHCS Member Information File)
// into CalAIM FHIR transaction Bundles (issue 7).
//
// Each input format has a JSON Schema (schemas/*.schema.json, embedded) whose property names
// are the public field names: the same snake_case names are the JSON keys and the CSV header,
// with `;` separating list items in CSV. A file is read into Rows; each row is checked by the
// schema and then by Go checks a schema cannot express (NPI check digit, real dates, known
// service codes, Z-codes billable on the date of service). A good row becomes the entries of a
// transaction Bundle: conditional creates keyed on the member's CIN, NPIs and the source
// record's own id, so that importing the same file twice stores nothing new.
//
// Nothing here touches the network, a store or a clock: the same input always gives the same
// Bundle, byte for byte (fullUrls are name-based UUIDs of each resource's identity).
//
// FHIR R4 transactions: https://hl7.org/fhir/R4/http.html#transaction
// Gravity SDOH Clinical Care: http://hl7.org/fhir/us/sdoh-clinicalcare
package mapping
