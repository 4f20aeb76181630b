package mapping

import (
	"strings"
	"testing"
)

// FuzzImport: any file of any format is read, checked and converted without a panic, and
// every row either converts or says why not.
func FuzzImport(f *testing.F) {
	f.Add("referral", "referral_id,referral_date,member_cin\nR,2026-01-01,91234567A\n", false)
	f.Add("screening", "member_cin,instrument,screening_date,answers\n91234567A,prapare,2026-01-01,67875-5=LA17956-6;x\n", false)
	f.Add("chw-encounter", `[{"encounter_id":"E","minutes":"x","start_time":"25:00"}]`, true)
	f.Add("dhcs-mif", `[1, "a", null, {"population_of_focus": "1a"}]`, true)
	f.Add("screening", `{"member_cin":"91234567A","instrument":"prapare","screening_date":"2026-01-01","questionnaire_response":{"resourceType":"QuestionnaireResponse","item":[{"linkId":"67875-5","answer":[{"valueBoolean":true},{}]},{}]}}`, true)
	f.Fuzz(func(t *testing.T, format, body string, isJSON bool) {
		var rows []Row
		var err error
		if isJSON {
			rows, err = ReadJSON(format, strings.NewReader(body), 1000)
		} else {
			rows, err = ReadCSV(format, strings.NewReader(body), 1000)
		}
		if err != nil {
			return
		}
		results, err := Convert(format, rows, Options{})
		if err != nil {
			t.Fatalf("Convert after a successful read: %v", err)
		}
		for _, r := range results {
			if (r.Bundle == nil) == (len(r.Errors) == 0) {
				t.Fatalf("row %d: bundle %v, errors %v", r.Row, r.Bundle != nil, r.Errors)
			}
			if r.Bundle != nil {
				_ = r.Bundle.Transaction()
			}
		}
	})
}
