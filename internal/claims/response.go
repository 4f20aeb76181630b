package claims

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Response builds the ClaimResponse for a result (without id, meta and request, which the
// server sets when it stores it). now is the created time.
func Response(r *Result, now time.Time) map[string]any {
	cr := map[string]any{
		"resourceType": "ClaimResponse",
		"status":       "active",
		"use":          "claim",
		"created":      now.UTC().Format(time.RFC3339),
		"outcome":      r.Outcome,
	}
	typ := map[string]any{"coding": []any{map[string]any{"system": ClaimTypeSystem, "code": "professional"}}}
	patient := map[string]any{"display": "unknown member"}
	if c := r.Claim; c != nil {
		if c.Type != nil && len(c.Type.Coding) > 0 {
			typ = toMap(c.Type)
		}
		if c.Patient != nil && (c.Patient.Reference != "" || c.Patient.Identifier != nil) {
			patient = toMap(c.Patient)
		}
		if c.Provider != nil {
			cr["requestor"] = toMap(c.Provider)
		}
	}
	cr["type"], cr["patient"] = typ, patient
	insurer := map[string]any{"display": "Medi-Cal managed care plan"}
	if r.Insurer != nil {
		insurer = toMap(r.Insurer)
	}
	cr["insurer"] = insurer
	if r.PreAuthRef != "" {
		cr["preAuthRef"] = r.PreAuthRef
	}
	cr["disposition"] = disposition(r)
	if len(r.Identifiers) > 0 {
		ids := make([]any, len(r.Identifiers))
		for i, id := range r.Identifiers {
			ids[i] = map[string]any{"system": id.System, "value": id.Value}
		}
		cr["identifier"] = ids
	}
	if len(r.Problems) > 0 {
		errs := make([]any, 0, len(r.Problems))
		for _, p := range r.Problems {
			e := map[string]any{"code": map[string]any{
				"coding": []any{map[string]any{"system": ErrorSystem, "code": p.Code}},
				"text":   p.Message,
			}}
			if p.Item > 0 {
				e["itemSequence"] = p.Item
			}
			errs = append(errs, e)
		}
		cr["error"] = errs
	}
	if len(r.Warnings) > 0 {
		notes := make([]any, len(r.Warnings))
		for i, w := range r.Warnings {
			notes[i] = map[string]any{"number": i + 1, "type": "display", "text": "warning " + w.Code + ": " + w.Message}
		}
		cr["processNote"] = notes
	}
	return cr
}

func disposition(r *Result) string {
	switch r.Outcome {
	case "complete":
		return "Claim accepted"
	case "partial":
		var items []string
		seen := map[int]bool{}
		for _, p := range r.Problems {
			if p.Item > 0 && !seen[p.Item] {
				seen[p.Item] = true
				items = append(items, fmt.Sprint(p.Item))
			}
		}
		return "Claim partially accepted: item " + strings.Join(items, ", ") + " rejected"
	}
	n := len(r.Problems)
	if n == 1 {
		return "Claim rejected: " + r.Problems[0].Message
	}
	return fmt.Sprintf("Claim rejected: %d problems (see error)", n)
}

// toMap turns a typed element back into a generic one (omitting empty fields).
func toMap(v any) map[string]any {
	b, _ := json.Marshal(v)
	var m map[string]any
	json.Unmarshal(b, &m)
	return m
}
