package claims

import (
	"fmt"
	"slices"
	"time"
)

// Conform checks the CalAIMClaim rules that base R4 does not: a professional claim with
// what an 837P needs (domain brief, "Claims"). Each problem names the element.
func Conform(c *Claim) []*Problem {
	var out []*Problem
	bad := func(format string, args ...any) {
		out = append(out, problem(ClaimNonconformant, format, args...))
	}
	if len(c.Identifier) == 0 || c.Identifier[0].Value == "" {
		bad("Claim.identifier: the submitter's claim number is required")
	}
	if c.Status != "active" {
		bad("Claim.status must be active")
	}
	if !c.Type.Has(ClaimTypeSystem, "professional") {
		bad("Claim.type must be %s#professional", ClaimTypeSystem)
	}
	if c.Use != "claim" {
		bad("Claim.use must be claim")
	}
	if c.Patient == nil || c.Patient.Reference == "" {
		bad("Claim.patient: a reference to the member is required")
	}
	if c.Created == "" {
		bad("Claim.created is required")
	}
	if c.Provider == nil || (c.Provider.Reference == "" && c.Provider.Identifier == nil) {
		bad("Claim.provider: the billing provider (Organization reference or NPI identifier) is required")
	}
	if c.Priority == nil {
		bad("Claim.priority is required")
	}
	focal := 0
	for i, in := range c.Insurance {
		if in.Focal {
			focal++
		}
		if in.Coverage.Reference == "" {
			bad("Claim.insurance[%d].coverage: a reference to the Coverage is required", i)
		}
	}
	if len(c.Insurance) == 0 || focal != 1 {
		bad("Claim.insurance: exactly one focal insurance is required")
	}
	dx := map[int]bool{}
	for i, d := range c.Diagnosis {
		if d.DiagnosisCodeableConcept == nil {
			bad("Claim.diagnosis[%d]: diagnosisCodeableConcept (ICD-10-CM) is required", i)
		}
		dx[d.Sequence] = true
	}
	if len(c.Diagnosis) == 0 {
		bad("Claim.diagnosis: at least one diagnosis is required")
	}
	if len(c.Diagnosis) > 12 {
		bad("Claim.diagnosis: at most 12 diagnoses fit an 837P")
	}
	if len(c.Item) == 0 {
		bad("Claim.item: at least one item is required")
	}
	if len(c.Item) > 50 {
		bad("Claim.item: at most 50 service lines fit an 837P claim")
	}
	var seqs []int
	for i := range c.Item {
		it := &c.Item[i]
		at := fmt.Sprintf("Claim.item[%d]", i)
		if it.Sequence < 1 || slices.Contains(seqs, it.Sequence) {
			bad("%s.sequence must be a positive number unique in the claim", at)
		}
		seqs = append(seqs, it.Sequence)
		if sys, _ := it.Code(); sys == "" {
			bad("%s.productOrService needs a CPT (%s) or HCPCS (%s) code", at, CodeSystemURI["cpt"], CodeSystemURI["hcpcs"])
		}
		if len(it.Modifier) > 4 {
			bad("%s.modifier: at most 4 modifiers", at)
		}
		if _, err := time.Parse(time.DateOnly, it.ServicedDate); err != nil {
			bad("%s.servicedDate (YYYY-MM-DD) is required", at)
		}
		if it.LocationCodeableConcept == nil || len(it.LocationCodeableConcept.Coding) == 0 || it.LocationCodeableConcept.Coding[0].Code == "" {
			bad("%s.locationCodeableConcept: the CMS place of service code is required", at)
		}
		if len(it.DiagnosisSequence) == 0 || len(it.DiagnosisSequence) > 4 {
			bad("%s.diagnosisSequence: 1 to 4 pointers into Claim.diagnosis are required", at)
		}
		for _, d := range it.DiagnosisSequence {
			if !dx[d] {
				bad("%s.diagnosisSequence: %d names no Claim.diagnosis", at, d)
			}
		}
	}
	return out
}
