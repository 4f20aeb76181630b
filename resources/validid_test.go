package resources_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/calaimfhir/calaimfhir/resources"
)

// ValidID is the R4 id datatype's regular expression, written as a loop: both must agree.
func TestValidID_AgreesWithTheDatatypeExpression(t *testing.T) {
	re := regexp.MustCompile(`^[A-Za-z0-9\-.]{1,64}$`)
	cases := []string{"", "a", "A-1.b", strings.Repeat("x", 64), strings.Repeat("x", 65), "a b", "a/b", "a_b",
		"é", "a\n", "\x00", "-", ".", "..", "Patient/1", "123", "a%20b", "ａ"}
	for c := 0; c < 256; c++ {
		cases = append(cases, string(rune(c)), "a"+string([]byte{byte(c)}))
	}
	for _, id := range cases {
		if got, want := resources.ValidID(id), re.MatchString(id); got != want {
			t.Errorf("ValidID(%q) = %v, the expression says %v", id, got, want)
		}
	}
}

func FuzzValidID(f *testing.F) {
	re := regexp.MustCompile(`^[A-Za-z0-9\-.]{1,64}$`)
	f.Add("abc-1.2")
	f.Fuzz(func(t *testing.T, id string) {
		if got, want := resources.ValidID(id), re.MatchString(id); got != want {
			t.Errorf("ValidID(%q) = %v, the expression says %v", id, got, want)
		}
	})
}
