package mapping_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/calaimfhir/calaimfhir/internal/r4"
	"github.com/calaimfhir/calaimfhir/mapping"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/mapping")

const dir = "../testdata/mapping"

// today is fixed so that the "date in the future" check does not depend on when tests run.
var today = time.Date(2026, 6, 30, 0, 0, 0, 0, time.UTC)

// read reads a fixture as JSON or CSV by its extension.
func read(t *testing.T, format, file string) []mapping.Row {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, file))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows []mapping.Row
	if strings.HasSuffix(file, ".csv") {
		rows, err = mapping.ReadCSV(format, f, 0)
	} else {
		rows, err = mapping.ReadJSON(format, f, 0)
	}
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return rows
}

// convertFile converts a fixture and returns the merged transaction and the row errors as text.
func convertFile(t *testing.T, format, file string, opts mapping.Options) ([]byte, string, []mapping.Result) {
	t.Helper()
	results, err := mapping.Convert(format, read(t, format, file), opts)
	if err != nil {
		t.Fatal(err)
	}
	all := mapping.NewBundle()
	var errs strings.Builder
	for _, r := range results {
		for _, e := range r.Errors {
			fmt.Fprintln(&errs, e.Error())
		}
		for _, w := range r.Warnings {
			fmt.Fprintf(&errs, "row %d: warning: %s\n", r.Row, w)
		}
		if r.Bundle != nil {
			all.Merge(r.Bundle)
		}
	}
	return all.Transaction(), errs.String(), results
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join(dir, "golden", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./mapping -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s differs from the golden file (-want +got):\n%s", name, diff)
	}
}

// TestGolden converts every fixture and compares the transaction (and the row report) with
// the golden files; every produced resource must be valid R4.
func TestGolden(t *testing.T) {
	tests := []struct {
		format, file string
		wantRows     int // rows converted
	}{
		{"referral", "referral.json", 2},
		{"referral", "referral.csv", 2},
		{"referral", "referral_bad.csv", 1},
		{"screening", "screening.json", 3},
		{"screening", "screening.csv", 2},
		{"chw-encounter", "chw-encounter.json", 2},
		{"chw-encounter", "chw-encounter.csv", 3},
		{"dhcs-mif", "dhcs-mif.csv", 2},
		{"dhcs-mif", "dhcs-mif.json", 1},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			tx, report, results := convertFile(t, tc.format, tc.file, mapping.Options{Today: today})
			good := 0
			for _, r := range results {
				if r.Bundle != nil {
					good++
				}
			}
			if good != tc.wantRows {
				t.Errorf("converted %d rows, want %d; report:\n%s", good, tc.wantRows, report)
			}
			base := strings.TrimSuffix(tc.file, filepath.Ext(tc.file)) + "." + strings.TrimPrefix(filepath.Ext(tc.file), ".")
			golden(t, base+".bundle.json", tx)
			golden(t, base+".report.txt", []byte(report))
			validateAll(t, tx)
		})
	}
}

// validateAll checks every entry's resource against base R4.
func validateAll(t *testing.T, tx []byte) {
	t.Helper()
	var b struct {
		Entry []struct {
			FullURL  string          `json:"fullUrl"`
			Resource json.RawMessage `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(tx, &b); err != nil {
		t.Fatal(err)
	}
	if _, err := r4.Validate(tx); err != nil {
		t.Errorf("the transaction Bundle is not valid R4: %v", err)
	}
	for i, e := range b.Entry {
		if _, err := r4.Validate(e.Resource); err != nil {
			var pretty bytes.Buffer
			json.Indent(&pretty, e.Resource, "", "  ")
			t.Errorf("entry %d (%s) is not valid R4: %v\n%s", i, e.FullURL, err, pretty.String())
		}
	}
}

// TestREADMEDocumentsEveryField: the field names are a public contract, so the README's import
// section names every field of every schema.
func TestREADMEDocumentsEveryField(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Skipf("README.md not found: %v", err)
	}
	start := strings.Index(string(readme), "## Importing referral forms")
	if start < 0 {
		t.Fatal("README has no import section")
	}
	section := string(readme[start:])
	for _, f := range mapping.Formats {
		cols, err := mapping.Columns(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cols {
			if !strings.Contains(section, "`"+c+"`") && !strings.Contains(section, ","+c+",") {
				t.Errorf("README does not document %s field %s", f, c)
			}
		}
		if _, err := mapping.Schema(f); err != nil {
			t.Error(err)
		}
	}
}
