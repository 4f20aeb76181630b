package profiles_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/calaimfhir/calaimfhir/internal/r4"
	"github.com/calaimfhir/calaimfhir/profiles"
)

type wantIssue struct {
	Severity   string `json:"severity"`
	Code       string `json:"code"`
	Expression string `json:"expression"`
	Key        string `json:"key"`
}

// TestFixtures walks testdata/profiles/<profile id>/: every fixture is valid R4; valid-*.json
// conform to the profile with no issue at all, and each invalid-*.json gives exactly the
// issues expect.json lists for it.
func TestFixtures(t *testing.T) {
	dirs, err := filepath.Glob(filepath.Join("..", "testdata", "profiles", "*"))
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no fixture folders (%v)", err)
	}
	e := profiles.Default()
	seen := map[string]bool{}
	for _, dir := range dirs {
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			continue // referral-bundle.json: a transaction, tested through the server
		}
		id := filepath.Base(dir)
		d, ok := e.DefinitionByID(id)
		if !ok {
			t.Errorf("%s: no StructureDefinition with that id", dir)
			continue
		}
		seen[id] = true
		var expect map[string][]wantIssue
		b, err := os.ReadFile(filepath.Join(dir, "expect.json"))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &expect); err != nil {
			t.Fatal(err)
		}
		valid, invalid := 0, 0
		files, _ := filepath.Glob(filepath.Join(dir, "*-*.json"))
		for _, f := range files {
			name := filepath.Base(f)
			want, ok := expect[name]
			if !ok {
				t.Errorf("%s/%s: not listed in expect.json", id, name)
				continue
			}
			if strings.HasPrefix(name, "valid-") {
				valid++
				if len(want) != 0 {
					t.Errorf("%s/%s: a valid fixture expects issues", id, name)
				}
			} else {
				invalid++
				if len(want) == 0 {
					t.Errorf("%s/%s: an invalid fixture expects no issue", id, name)
				}
			}
			t.Run(id+"/"+name, func(t *testing.T) {
				body, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := r4.Validate(body); err != nil {
					t.Fatalf("fixture is not valid R4: %v", err)
				}
				var got []wantIssue
				for _, is := range e.Validate(context.Background(), body, d.URL) {
					if is.Profile == "" || is.Message == "" {
						t.Errorf("issue without profile or message: %+v", is)
					}
					got = append(got, wantIssue{is.Severity, is.Code, is.Expression, is.Key})
				}
				sortIssues(got)
				sortIssues(want)
				if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
					t.Errorf("issues (-want +got):\n%s", diff)
				}
			})
		}
		if valid < 3 || invalid < 5 {
			t.Errorf("%s: %d valid and %d invalid fixtures; want at least 3 and 5", id, valid, invalid)
		}
	}
	for _, d := range e.Definitions() {
		if d.Type != "Extension" && !seen[d.ID] {
			t.Errorf("profile %s has no fixtures", d.ID)
		}
	}
}

func sortIssues(list []wantIssue) {
	slices.SortFunc(list, func(a, b wantIssue) int {
		return strings.Compare(a.Expression+"\x00"+a.Key, b.Expression+"\x00"+b.Key)
	})
}
