package resources

import (
	"slices"
	"testing"
)

// TestSpecTargets: reference parameters declared without target types get R4's, as the
// validator enforces them; one whose element may refer to anything keeps none.
func TestSpecTargets(t *testing.T) {
	cases := []struct {
		typ, param string
		want       []string // nil: any type
	}{
		{"Task", "owner", []string{"CareTeam", "Device", "HealthcareService", "Organization", "Patient", "Practitioner", "PractitionerRole", "RelatedPerson"}},
		{"Task", "requester", []string{"Device", "Organization", "Patient", "Practitioner", "PractitionerRole", "RelatedPerson"}},
		{"Task", "focus", nil},
		{"Task", "subject", nil},
		{"Task", "patient", []string{"Patient"}}, // declared
		{"Coverage", "payor", []string{"Organization", "Patient", "RelatedPerson"}},
		{"Consent", "actor", []string{"CareTeam", "Device", "Group", "Organization", "Patient", "Practitioner", "PractitionerRole", "RelatedPerson"}},
		{"ServiceRequest", "instantiates-canonical", nil}, // a canonical, not a Reference
	}
	for _, c := range cases {
		p, ok := LookupParam(c.typ, c.param)
		if !ok {
			t.Fatalf("%s has no parameter %s", c.typ, c.param)
		}
		if !slices.Equal(p.Targets, c.want) {
			t.Errorf("%s.%s targets %v, want %v", c.typ, c.param, p.Targets, c.want)
		}
	}
	if got := specTargets("Task", []string{"owner", "status"}); got != nil {
		t.Errorf("a path that is not a Reference: %v, want any", got)
	}
	if got := specTargets("NoSuchType", []string{"owner"}); got != nil {
		t.Errorf("an unknown type: %v, want any", got)
	}
}
