package resources

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// topFieldsAgrees checks topFields against encoding/json on one input: for a valid JSON object
// it must succeed and give every member's raw value exactly as encoding/json does.
func topFieldsAgrees(t *testing.T, raw []byte) {
	t.Helper()
	var want map[string]json.RawMessage
	valid := json.Unmarshal(raw, &want) == nil && bytes.HasPrefix(bytes.TrimLeft(raw, " \t\r\n"), []byte("{"))
	got, ok := topFields(raw, func(string) bool { return true })
	if !valid {
		return // on invalid input topFields may fail or not; the caller falls back either way
	}
	if !ok {
		t.Fatalf("topFields failed on a valid object: %q", raw)
	}
	for k, v := range want {
		if strings.Contains(k, `\`) || !json.Valid([]byte(`"`+k+`"`)) {
			continue
		}
		if g, has := got[k]; has && !bytes.Equal(g, v) {
			t.Fatalf("member %q: got %q, want %q", k, g, v)
		}
	}
	for k := range got {
		if _, has := want[k]; !has {
			t.Fatalf("member %q found but not in the object %q", k, raw)
		}
	}
}

func TestTopFields(t *testing.T) {
	for _, raw := range []string{
		`{}`, ` { } `, `{"a":1}`, `{"a":"x,}]","b":[1,{"c":"\"}"}],"d":null}`,
		`{"resourceType":"Patient","id":"p","meta":{"tag":[{"system":"s","code":"c"}]},"active":true,"n":-1.5e3}`,
		"{\n \"a\" : [ ] ,\n \"b\":{ } }", `{"a\"b":1,"c":2}`, `{"a":"\\","b":"\\\""}`,
		`{"a":1,"a":2}`, // duplicate: the last wins, as in encoding/json
	} {
		topFieldsAgrees(t, []byte(raw))
	}
	for _, bad := range []string{``, `[]`, `{"a"}`, `{"a":}`, `{"a":1`, `{"a":"x}`, `{"a":[1,2}`, `"s"`} {
		if _, ok := topFields([]byte(bad), func(string) bool { return true }); ok && !json.Valid([]byte(bad)) {
			t.Errorf("topFields accepted %q", bad)
		}
	}
}

// FuzzTopFields starts from the official examples (when ../shared is present).
func FuzzTopFields(f *testing.F) {
	f.Add([]byte(`{"a":[{"b":"]"}],"c":"}"}`))
	dir := filepath.Join("..", "..", "shared", "fhir-examples", "r4")
	if entries, err := os.ReadDir(dir); err == nil {
		for i, e := range entries {
			if i > 50 {
				break
			}
			if raw, err := os.ReadFile(filepath.Join(dir, e.Name())); err == nil {
				f.Add(raw)
			}
		}
	}
	f.Fuzz(func(t *testing.T, raw []byte) { topFieldsAgrees(t, raw) })
}
