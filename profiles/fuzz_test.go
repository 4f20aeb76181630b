package profiles_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/calaimfhir/calaimfhir/profiles"
)

// FuzzValidate: any JSON against any profile gives issues, never a panic. $validate runs the
// profiles even on bodies that fail base R4, so the engine meets arbitrary shapes.
func FuzzValidate(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("..", "testdata", "profiles", "*", "*-*.json"))
	for _, name := range files {
		b, _ := os.ReadFile(name)
		f.Add(b, uint8(len(name)))
	}
	f.Add([]byte(`{"resourceType":"Claim","item":"x","diagnosis":[1,{"sequence":{}}],"careTeam":[{"provider":{"identifier":[{"system":"http://hl7.org/fhir/sid/us-npi","value":5}]}}]}`), uint8(0))
	f.Add([]byte(`{"resourceType":"Patient","identifier":{"system":"https://calaimfhir.org/fhir/sid/medi-cal-cin","value":[1]},"meta":{"profile":"x"}}`), uint8(6))
	e := profiles.Default()
	var urls []string
	for _, d := range e.Definitions() {
		urls = append(urls, d.URL)
	}
	f.Fuzz(func(t *testing.T, body []byte, which uint8) {
		e.Validate(context.Background(), body, urls[int(which)%len(urls)])
	})
}
