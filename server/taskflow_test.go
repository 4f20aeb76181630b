package server_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/calaimfhir/calaimfhir/internal/fhirtest"
)

// TestTaskWorkflow_ByRole walks a referral through its statuses with the tokens of the plan
// that requested it, the CBO that owns it and a CBO that has nothing to do with it.
func TestTaskWorkflow_ByRole(t *testing.T) {
	store, _ := fhirtest.SQLite.OpenFresh(t)
	s := fhirtest.Start(t, store, fhirtest.Options{})
	referralNetwork(t, s)
	plan := s.Token("plan", "Organization/plan-1", "system/*.cruds")
	owner := s.Token("cbo", "Organization/cbo-a", "system/*.cruds")
	stranger := s.Token("cbo", "Organization/cbo-b", "system/*.cruds")

	task := map[string]any{
		"resourceType": "Task", "id": "ref-1", "status": "requested", "intent": "order",
		"focus": map[string]any{"reference": "ServiceRequest/sr-1"}, "for": map[string]any{"reference": "Patient/ana"},
		"requester": map[string]any{"reference": "Organization/plan-1"}, "owner": map[string]any{"reference": "Organization/cbo-a"},
	}
	put := func(token string, changes map[string]any) *fhirtest.Response {
		t.Helper()
		for k, v := range changes {
			if v == nil {
				delete(task, k)
			} else {
				task[k] = v
			}
		}
		body, _ := json.Marshal(task)
		return s.Do("PUT", "/fhir/Task/ref-1", body, "Authorization", "Bearer "+token)
	}
	reason := map[string]any{"text": "member declined"}
	output := []any{map[string]any{"type": map[string]any{"text": "result"}, "valueReference": map[string]any{"reference": "Patient/ana"}}}

	steps := []struct {
		name    string
		token   string
		changes map[string]any
		status  int
	}{
		{"a CBO cannot create a referral for the plan", owner, map[string]any{}, 403},
		{"the requester creates it", plan, map[string]any{}, 201},
		{"a stranger cannot see it, so not accept it", stranger, map[string]any{"status": "accepted"}, 404},
		{"the requester cannot accept", plan, map[string]any{"status": "accepted"}, 403},
		{"rejecting needs a reason", owner, map[string]any{"status": "rejected"}, 422},
		{"the owner accepts", owner, map[string]any{"status": "accepted"}, 200},
		{"accepted cannot go back to requested", plan, map[string]any{"status": "requested"}, 409},
		{"the owner starts work", owner, map[string]any{"status": "in-progress"}, 200},
		{"the owner pauses", owner, map[string]any{"status": "on-hold"}, 200},
		{"the requester cannot resume", plan, map[string]any{"status": "in-progress"}, 403},
		{"the owner resumes", owner, map[string]any{"status": "in-progress"}, 200},
		{"completing needs an output", owner, map[string]any{"status": "completed"}, 422},
		{"failing needs a reason", owner, map[string]any{"status": "failed"}, 422},
		{"the owner completes with an output", owner, map[string]any{"status": "completed", "output": output}, 200},
		{"completed cannot go back to requested", plan, map[string]any{"status": "requested", "output": nil}, 409},
		{"completed cannot be cancelled", plan, map[string]any{"status": "cancelled", "statusReason": reason}, 409},
		{"the owner cannot mark it entered-in-error", owner, map[string]any{"status": "entered-in-error", "statusReason": nil}, 403},
		{"the requester marks it entered-in-error", plan, map[string]any{"status": "entered-in-error"}, 200},
		{"entered-in-error is final", plan, map[string]any{"status": "requested"}, 409},
	}
	for _, st := range steps {
		r := put(st.token, st.changes)
		if r.Status != st.status {
			t.Fatalf("%s: status %d, want %d: %s", st.name, r.Status, st.status, r.Body)
		}
		if st.status >= 400 {
			wantOutcome(t, r, st.status, "")
			// The refused change is not kept in the local copy either.
			cur := s.Do("GET", "/fhir/Task/ref-1", nil)
			if cur.Status == http.StatusOK {
				json.Unmarshal(cur.Body, &task)
			}
		}
	}

	// Cancelling is open to both sides, and PATCH and Bundles follow the same rules.
	for i, tc := range []struct {
		canceller string
		status    int
	}{{plan, 200}, {owner, 200}, {stranger, 404}} {
		id := []string{"c-1", "c-2", "c-3"}[i]
		body, _ := json.Marshal(map[string]any{"resourceType": "Task", "id": id, "status": "requested", "intent": "order",
			"focus": map[string]any{"reference": "ServiceRequest/sr-1"}, "requester": map[string]any{"reference": "Organization/plan-1"},
			"owner": map[string]any{"reference": "Organization/cbo-a"}})
		wantStatus(t, s.Do("PUT", "/fhir/Task/"+id, body, "Authorization", "Bearer "+plan), http.StatusCreated)
		r := s.Do("PATCH", "/fhir/Task/"+id, []byte(`[{"op":"replace","path":"/status","value":"cancelled"},{"op":"add","path":"/statusReason","value":{"text":"duplicate"}}]`),
			"Content-Type", "application/json-patch+json", "Authorization", "Bearer "+tc.canceller)
		if r.Status != tc.status {
			t.Fatalf("cancel %s: %d, want %d: %s", id, r.Status, tc.status, r.Body)
		}
	}
	bundle := []byte(`{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"PATCH","url":"Task/c-3"},
		"resource":{"resourceType":"Parameters","parameter":[{"name":"operation","part":[{"name":"type","valueCode":"replace"},
		{"name":"path","valueString":"Task.status"},{"name":"value","valueCode":"accepted"}]}]}}]}`)
	wantOutcome(t, s.Do("POST", "/fhir", bundle, "Authorization", "Bearer "+stranger), http.StatusNotFound, "")
	r := s.Do("POST", "/fhir", bundle, "Authorization", "Bearer "+owner)
	wantStatus(t, r, http.StatusOK)
}
