package profiles_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/calaimfhir/calaimfhir/profiles"
)

// ruleKind tells whether an expected issue is one a JSON Schema states ("schema"), one only
// the Go invariants or warnings catch ("engine"), or the type restriction of a choice element,
// which the schema states only sometimes (as a required valueX) ("either").
func ruleKind(w wantIssue) string {
	switch {
	case w.Code == "structure" && strings.HasSuffix(w.Key, "[x]"):
		return "either"
	case w.Code == "invariant" || w.Severity != "error":
		return "engine"
	}
	return "schema"
}

// TestSchemas_AgreeWithEngine generates the JSON Schema of each profile from its
// StructureDefinition and runs every fixture through it: valid fixtures pass; an invalid
// fixture whose issues a schema can state fails; one whose issues are all invariants passes
// (the schema must not reject what only the Go invariants catch).
func TestSchemas_AgreeWithEngine(t *testing.T) {
	e := profiles.Default()
	for _, d := range e.Definitions() {
		if d.Type == "Extension" {
			continue
		}
		raw, err := e.Schema(d.URL)
		if err != nil {
			t.Fatalf("%s: %v", d.ID, err)
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		c := jsonschema.NewCompiler()
		if err := c.AddResource(d.ID+".schema.json", doc); err != nil {
			t.Fatal(err)
		}
		sch, err := c.Compile(d.ID + ".schema.json")
		if err != nil {
			t.Fatalf("%s: schema does not compile: %v", d.ID, err)
		}
		dir := filepath.Join("..", "testdata", "profiles", d.ID)
		var expect map[string][]wantIssue
		b, _ := os.ReadFile(filepath.Join(dir, "expect.json"))
		if err := json.Unmarshal(b, &expect); err != nil {
			t.Fatal(err)
		}
		checked := 0
		for name, want := range expect {
			schemaOnly, invariantOnly := len(want) > 0, len(want) > 0
			for _, w := range want {
				switch ruleKind(w) {
				case "schema":
					invariantOnly = false
				case "engine":
					schemaOnly = false
				default:
					schemaOnly, invariantOnly = false, false
				}
			}
			body, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			inst, _ := jsonschema.UnmarshalJSON(bytes.NewReader(body))
			err = sch.Validate(inst)
			switch {
			case len(want) == 0 || invariantOnly:
				checked++
				if err != nil {
					t.Errorf("%s/%s: the engine finds no schema-level issue but the schema rejects it: %v", d.ID, name, err)
				}
			case schemaOnly:
				checked++
				if err == nil {
					t.Errorf("%s/%s: the engine reports %v but the schema accepts it", d.ID, name, want)
				}
			}
		}
		if checked < 8 {
			t.Errorf("%s: only %d fixtures compared", d.ID, checked)
		}
	}
	if _, err := e.Schema(profiles.Base + "/StructureDefinition/nope"); err == nil {
		t.Error("unknown profile: no error")
	}
}
