package profiles

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/calaimfhir/calaimfhir/resources"
)

// RequirableTypes are the types a deployment may require the CalAIM profile for.
var RequirableTypes = []string{"Patient", "ServiceRequest", "Task", "Consent", "Claim", "Encounter", "Condition", "Observation", "Coverage"}

// Enforce wraps base R4 validation with the CalAIM profiles for the write path: a resource
// that names CalAIM profiles in meta.profile is checked against each of them, and a resource
// whose type is in require is checked against its type's CalAIM profile whether it names it or
// not. Error-level issues make the write fail with KindUnprocessable (422) listing every issue;
// warnings do not stop it. Profiles outside the CalAIM base (US Core, SDOHCC) are not checked
// here. It returns an error for a required type that has no CalAIM profile.
func (e *Engine) Enforce(base resources.Validator, require []string) (resources.Validator, error) {
	req := map[string]string{}
	for _, typ := range require {
		url, ok := e.ProfileFor(typ)
		if !ok {
			return nil, fmt.Errorf("no CalAIM profile for %s (profiles exist for %s)", typ, strings.Join(RequirableTypes, ", "))
		}
		req[typ] = url
	}
	return func(body []byte) (string, error) {
		typ, err := base(body)
		if err != nil {
			return typ, err
		}
		required := req[typ]
		if required == "" && !bytes.Contains(body, []byte(Base)) {
			return typ, nil // claims no CalAIM profile: nothing more to check
		}
		doc, err := decode(body)
		if err != nil {
			return "", resources.Wrap(resources.KindBadRequest, err, "the body is not a JSON object")
		}
		urls := applicable(doc, required)
		if len(urls) == 0 {
			return typ, nil
		}
		var issues []Issue
		for _, url := range urls {
			issues = append(issues, e.ValidateDoc(context.Background(), doc, url)...)
		}
		if errs := Errors(issues); len(errs) > 0 {
			return "", &resources.Error{Kind: resources.KindUnprocessable,
				Message: fmt.Sprintf("the %s does not conform to its CalAIM profile", typ), Issues: ToOutcome(errs)}
		}
		return typ, nil
	}, nil
}

// Applicable lists the CalAIM profiles a resource must be checked against: those it names in
// meta.profile under the CalAIM base, plus required (when not empty).
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
	return applicable(doc, required)
}

func applicable(doc map[string]any, required string) []string {
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

// ToOutcome turns issues into OperationOutcome issues. The diagnostics name the profile and
// the rule (constraint key or element id) so a reader can find it in the StructureDefinition.
func ToOutcome(issues []Issue) []resources.Issue {
	out := make([]resources.Issue, 0, len(issues))
	for _, is := range issues {
		ri := resources.Issue{Severity: resources.Severity(is.Severity), Code: resources.IssueType(is.Code),
			Diagnostics: fmt.Sprintf("%s [%s %s]", is.Message, strings.TrimPrefix(is.Profile, Base+"/StructureDefinition/"), is.Key)}
		if is.Expression != "" {
			ri.Expression = []string{is.Expression}
		}
		out = append(out, ri)
	}
	return out
}

// MarshalIssues renders issues as an OperationOutcome (for the CLI).
func MarshalIssues(issues []resources.Issue) []byte {
	type issue struct {
		Severity    string   `json:"severity"`
		Code        string   `json:"code"`
		Diagnostics string   `json:"diagnostics,omitempty"`
		Expression  []string `json:"expression,omitempty"`
	}
	oo := struct {
		ResourceType string  `json:"resourceType"`
		Issue        []issue `json:"issue"`
	}{ResourceType: "OperationOutcome"}
	for _, is := range issues {
		oo.Issue = append(oo.Issue, issue{string(is.Severity), string(is.Code), is.Diagnostics, is.Expression})
	}
	b, _ := json.MarshalIndent(oo, "", "  ")
	return b
}
