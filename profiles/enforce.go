package profiles

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
)

// RequirableTypes are the types a deployment may require the CalAIM profile for.
var RequirableTypes = []string{"Patient", "ServiceRequest", "Task", "Consent", "Claim", "Encounter", "Condition", "Observation", "Coverage"}

// Applicable lists the CalAIM profiles a resource must be checked against: those it names in
// meta.profile under the CalAIM base, plus required (when not empty). Profiles of other bases
// (US Core, SDOHCC) are not listed: this engine does not hold them.
func (e *Engine) Applicable(body []byte, typ, required string) []string {
	if !bytes.Contains(body, []byte(Base)) {
		if required != "" {
			return []string{required}
		}
		return nil
	}
	doc, err := decode(body)
	if err != nil {
		return nil
	}
	return ApplicableDoc(doc, required)
}

// ApplicableDoc is Applicable for a decoded resource.
func ApplicableDoc(doc map[string]any, required string) []string {
	var urls []string
	for _, p := range Claims(doc) {
		if strings.HasPrefix(p, Base+"/") && !slices.Contains(urls, p) {
			urls = append(urls, p)
		}
	}
	if required != "" && !slices.Contains(urls, required) {
		urls = append(urls, required)
	}
	return urls
}

// Decode parses a resource the way the engine does (numbers as float64).
func Decode(body []byte) (map[string]any, error) { return decode(body) }

// Errors keeps the error-level issues.
func Errors(issues []Issue) []Issue {
	var out []Issue
	for _, is := range issues {
		if is.Severity == "error" {
			out = append(out, is)
		}
	}
	return out
}

// Diagnostics is the issue's message followed by the profile id and the rule (constraint
// key or element id), so a reader can find it in the StructureDefinition.
func (is Issue) Diagnostics() string {
	return fmt.Sprintf("%s [%s %s]", is.Message, strings.TrimPrefix(is.Profile, Base+"/StructureDefinition/"), is.Key)
}
