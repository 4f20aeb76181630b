// Package mapping will hold the pure conversions from CBO referral forms, SDOH screenings,
// CHW encounter logs and DHCS files into CalAIM FHIR resources, and back (issue 7).
package mapping
