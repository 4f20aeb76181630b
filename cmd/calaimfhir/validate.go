package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/calaimfhir/calaimfhir/internal/r4"
	"github.com/calaimfhir/calaimfhir/profiles"
	"github.com/calaimfhir/calaimfhir/resources"
	"github.com/calaimfhir/calaimfhir/terminology"
)

// calaimProfileTypes is what --require-profiles=calaim stands for: the types of the referral
// and claim exchange.
var calaimProfileTypes = []string{"Patient", "ServiceRequest", "Task", "Consent", "Claim"}

// profileEngine loads the CalAIM definitions with the terminology of dir laid over the
// built-in one ("" for the built-in only).
func profileEngine(dir string) (*profiles.Engine, error) {
	if dir == "" {
		return profiles.Default(), nil
	}
	terms, err := terminology.Load(os.DirFS(dir))
	if err != nil {
		return nil, fmt.Errorf("--terminology %s: %w", dir, err)
	}
	e, err := profiles.New(terms)
	if err != nil {
		return nil, fmt.Errorf("--terminology %s: %w", dir, err)
	}
	return e, nil
}

// requiredProfileTypes parses --require-profiles: a comma-separated list of types, or calaim.
func requiredProfileTypes(e *profiles.Engine, s string) ([]string, error) {
	var out []string
	for _, t := range splitList(s) {
		if t == "calaim" {
			out = append(out, calaimProfileTypes...)
			continue
		}
		if _, ok := e.ProfileFor(t); !ok {
			return nil, fmt.Errorf("--require-profiles: no CalAIM profile for %q (types: %s, or calaim)", t, strings.Join(profiles.RequirableTypes, ", "))
		}
		out = append(out, t)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

var errInvalid = errors.New("not valid")

// validateCmd checks FHIR JSON files against base R4 and the CalAIM profiles they name (or
// the one given with --profile) and prints one OperationOutcome per file. It fails when any
// file has an error-level issue.
func validateCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("validate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	profile := fs.String("profile", "", "validate against this CalAIM profile (canonical URL or id, e.g. calaim-patient) instead of those the resource names")
	termDir := fs.String("terminology", "", "folder of CodeSystem/ValueSet JSON files that replace or add to the built-in terminology")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return fmt.Errorf("usage: calaimfhir validate [--profile URL] [--terminology DIR] FILE...")
	}
	e, err := profileEngine(*termDir)
	if err != nil {
		return err
	}
	if *profile != "" && !strings.Contains(*profile, "/") {
		d, ok := e.DefinitionByID(*profile)
		if !ok {
			return fmt.Errorf("--profile: no CalAIM profile with id %q", *profile)
		}
		*profile = d.URL
	}
	failed := false
	for _, name := range fs.Args() {
		body, err := os.ReadFile(name)
		if err != nil {
			return err
		}
		issues, bad := validateFile(e, body, *profile)
		failed = failed || bad
		fmt.Fprintf(stdout, "%s:\n%s\n", name, marshalOutcome(issues))
	}
	if failed {
		return errInvalid
	}
	return nil
}

func validateFile(e *profiles.Engine, body []byte, profile string) (issues []resources.Issue, failed bool) {
	typ, err := r4.Validate(body)
	if err != nil {
		var re *resources.Error
		if !errors.As(err, &re) || re.Kind != resources.KindUnprocessable {
			return (&resources.Error{Kind: resources.KindBadRequest, Message: err.Error()}).OutcomeIssues(), true
		}
		issues = append(issues, re.OutcomeIssues()...)
		failed = true
		typ = ""
	}
	urls := []string{profile}
	if profile == "" {
		urls = e.Applicable(body, typ, "")
	}
	for _, u := range urls {
		found := e.Validate(context.Background(), body, u)
		if len(profiles.Errors(found)) > 0 {
			failed = true
		}
		for _, is := range found {
			ri := resources.Issue{Severity: resources.Severity(is.Severity), Code: resources.IssueType(is.Code), Diagnostics: is.Diagnostics()}
			if is.Expression != "" {
				ri.Expression = []string{is.Expression}
			}
			issues = append(issues, ri)
		}
	}
	if len(issues) == 0 {
		issues = []resources.Issue{{Severity: resources.SeverityInformation, Code: resources.IssueInformational, Diagnostics: "valid"}}
	}
	return issues, failed
}

// marshalOutcome renders issues as an OperationOutcome.
func marshalOutcome(issues []resources.Issue) []byte {
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
