package mapping_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/calaimfhir/calaimfhir/profiles"
)

// TestGoldenBundles_ConformToTheirProfiles validates every golden resource that claims a CalAIM
// profile with the profile engine the server enforces on write.
func TestGoldenBundles_ConformToTheirProfiles(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(dir, "golden", "*.bundle.json"))
	for _, file := range files {
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var b struct {
			Entry []struct {
				FullURL  string          `json:"fullUrl"`
				Resource json.RawMessage `json:"resource"`
			} `json:"entry"`
		}
		if err := json.Unmarshal(raw, &b); err != nil {
			t.Fatal(err)
		}
		for _, e := range b.Entry {
			var m struct {
				ResourceType string
				Meta         struct{ Profile []string }
			}
			json.Unmarshal(e.Resource, &m)
			for _, p := range m.Meta.Profile {
				for _, is := range profiles.Validate(context.Background(), e.Resource, p) {
					if is.Severity == "error" || is.Severity == "fatal" {
						t.Errorf("%s %s %s: %+v", filepath.Base(file), m.ResourceType, e.FullURL, is)
					}
				}
			}
		}
	}
}
