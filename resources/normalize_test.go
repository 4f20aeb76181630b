package resources_test

import (
	"sync"
	"testing"

	"github.com/calaimfhir/calaimfhir/resources"
)

func TestNormalizeString_FoldsCaseAndAccents(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"Garcia", "garcia"},
		{"GARCÍA", "garcia"},
		{"José", "jose"},
		{"Jose\u0301", "jose"}, // decomposed accent
		{"Ångström", "angstrom"},
		{"Nguyễn", "nguyen"},
		{"Müller-Lüdenscheidt", "muller-ludenscheidt"},
		{"O'Brien Smith", "o'brien smith"},
		{"北京", "北京"},
		{"12345678A", "12345678a"},
	}
	for _, tt := range tests {
		if got := resources.NormalizeString(tt.in); got != tt.want {
			t.Errorf("NormalizeString(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// The pooled transform chains must not be shared by concurrent calls.
func TestNormalizeString_Concurrent(t *testing.T) {
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in, want := []string{"José", "Ångström", "Nguyễn"}[i%3], []string{"jose", "angstrom", "nguyen"}[i%3]
			for range 2000 {
				if got := resources.NormalizeString(in); got != want {
					t.Errorf("NormalizeString(%q) = %q", in, got)
					return
				}
			}
		}()
	}
	wg.Wait()
}
