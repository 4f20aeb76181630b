package resources_test

import (
	"bufio"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/calaimfhir/calaimfhir/resources"
)

// r4Params reads testdata/searchparams/r4.txt: type → code → parameter type.
func r4Params(t *testing.T) map[string]map[string]resources.ParamType {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "testdata", "searchparams", "r4.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]map[string]resources.ParamType{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 3 {
			t.Fatalf("bad line %q", line)
		}
		if out[fields[0]] == nil {
			out[fields[0]] = map[string]resources.ParamType{}
		}
		out[fields[0]][fields[1]] = resources.ParamType(fields[2])
	}
	return out
}

// TestParams_EveryR4ParameterIsSupported: every parameter R4 defines for a stored type is in
// the table with the spec's type, and every other parameter in the table is marked as the
// server's own.
func TestParams_EveryR4ParameterIsSupported(t *testing.T) {
	spec := r4Params(t)
	for _, typ := range resources.Types {
		want := spec[typ]
		if len(want) == 0 {
			t.Errorf("%s: no R4 parameters written down", typ)
			continue
		}
		for code, ptype := range want {
			p, ok := resources.LookupParam(typ, code)
			switch {
			case !ok:
				t.Errorf("%s?%s (%s) is not supported", typ, code, ptype)
			case p.Type != ptype:
				t.Errorf("%s?%s is a %s parameter here, a %s in R4", typ, code, p.Type, ptype)
			case p.Local:
				t.Errorf("%s?%s is defined by R4 but marked local", typ, code)
			}
		}
		for code, ptype := range spec["*"] {
			if code == "_id" || code == "_lastUpdated" {
				continue // parsed specially, not indexed as keys
			}
			if p, ok := resources.LookupParam(typ, code); !ok || p.Type != ptype {
				t.Errorf("%s?%s: want the Resource parameter (%s)", typ, code, ptype)
			}
		}
		names := resources.CompositeNames(typ)
		for _, p := range resources.Params(typ) {
			names = append(names, p.Name)
		}
		for _, name := range names {
			p, _ := resources.LookupParam(typ, name)
			if _, inSpec := want[name]; !inSpec && spec["*"][name] == "" && !p.Local {
				t.Errorf("%s?%s is not an R4 parameter: mark it Local or remove it", typ, name)
			}
			if def := p.Definition(typ); p.Local != !strings.HasPrefix(def, "http://hl7.org/fhir/SearchParameter/") {
				t.Errorf("%s?%s: definition %s", typ, name, def)
			}
		}
	}
	for typ := range spec {
		if typ != "*" && !slices.Contains(resources.Types, typ) {
			t.Errorf("the R4 list names %s, which is not stored", typ)
		}
	}
}

// TestUnindexed: present keys and token keys other than the code-only form (alone or in a
// composite) are the ones a store may leave out of its index; every other form stays
// searchable by index, and each unindexed token key but a system-only one relaxes to the
// code-only key every resource with it also has.
func TestUnindexed(t *testing.T) {
	for key, want := range map[string]bool{
		resources.PresentKey("owner"):                   true,
		resources.TokenSystemKey("identifier", "urn:x"): true,
		resources.CompositeKey("code-value-concept", resources.TokenSystemKey("", "http://loinc.org"), resources.TokenCodeKey("", "LA1")):  true,
		resources.CompositeKey("code-value-concept", resources.TokenCodeKey("", "1-1"), resources.TokenSystemKey("", "http://loinc.org")):  true,
		resources.CompositeKey("code-value-concept", resources.TokenKey("", "http://loinc.org", "1-1"), resources.TokenCodeKey("", "LA1")): true,
		resources.CompositeKey("code-value-concept", resources.TokenCodeKey("", "1-1"), resources.TokenCodeKey("", "LA1")):                 false,
		resources.CompositeKey("code-value-concept", resources.TokenCodeKey("", "1-1"), resources.RefKey("", "Patient", "p")):              false,
		resources.TokenKey("identifier", "urn:x", "1"): true,
		resources.TokenKey("status", "", "final"):      true,
		resources.CompositeKey("code-value-concept", resources.TokenKey("", "", "1-1"), resources.TokenCodeKey("", "LA1")): true,
		resources.CompositeKey("code-value-concept", resources.TokenCodeKey("", "1-1"), resources.TokenKey("", "", "LA1")): true,
		resources.TokenKey("address-city:exact", "", "Fresno"):                                                             false,
		resources.TokenCodeKey("status", "final"):                                                                          false,
		resources.RefKey("subject", "Patient", "p1"):                                                                       false,
		resources.RefIDKey("subject", "p1"):                                                                                false,
		resources.TokenKey("family:exact", "", "Rivera"):                                                                   false,
		resources.OfTypeKey("urn:t", "MA", "9"):                                                                            false,
	} {
		if got := resources.Unindexed(key); got != want {
			t.Errorf("Unindexed(%q) = %v, want %v", key, got, want)
		}
	}
	for key, want := range map[string]string{
		resources.TokenKey("identifier", "urn:x", "1"):          resources.TokenCodeKey("identifier", "1"),
		resources.TokenKey("status", "", "final"):               resources.TokenCodeKey("status", "final"),
		resources.TokenCodeKey("status", "final"):               resources.TokenCodeKey("status", "final"),
		resources.RefKey("subject", "Patient", "p1"):            resources.RefKey("subject", "Patient", "p1"),
		resources.TokenKey("subject:identifier", "urn:x", "m1"): resources.TokenCodeKey("subject:identifier", "m1"),
		resources.CompositeKey("code-value-concept", resources.TokenKey("", "http://loinc.org", "1-1"), resources.TokenKey("", "", "LA1")): resources.CompositeKey("code-value-concept", resources.TokenCodeKey("", "1-1"), resources.TokenCodeKey("", "LA1")),
		resources.TokenSystemKey("identifier", "urn:x"): "",
		resources.PresentKey("owner"):                   "",
		resources.OfTypeKey("", "MA", "9"):              "",
		resources.CompositeKey("code-value-concept", resources.TokenKey("", "http://loinc.org", "1-1"), resources.TokenSystemKey("", "http://loinc.org")): "",
	} {
		got, ok := resources.Relaxed(key)
		if want == "" && ok || want != "" && got != want {
			t.Errorf("Relaxed(%q) = %q, %v, want %q", key, got, ok, want)
		}
	}
	// Every resource that has a key has its relaxation: the extraction writes both.
	doc := map[string]any{"resourceType": "Observation", "status": "final",
		"code":                 map[string]any{"coding": []any{map[string]any{"system": "http://loinc.org", "code": "88124-3"}}},
		"valueCodeableConcept": map[string]any{"coding": []any{map[string]any{"system": "http://loinc.org", "code": "LA19952-3"}}},
		"identifier":           []any{map[string]any{"system": "urn:x", "value": "o1"}}}
	eq := resources.ExtractKeys("Observation", doc).Eq
	for _, k := range eq {
		if r, ok := resources.Relaxed(k); ok && !slices.Contains(eq, r) {
			t.Errorf("%q relaxes to %q, which the extraction did not write", k, r)
		}
	}
}
