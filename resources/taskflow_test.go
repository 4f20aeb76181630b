package resources_test

import (
	"slices"
	"testing"

	"github.com/calaimfhir/calaimfhir/resources"
)

var allStatuses = []string{"draft", "requested", "received", "accepted", "rejected", "ready", "cancelled",
	"in-progress", "on-hold", "failed", "completed", "entered-in-error"}

// legal are the transitions the referral workflow allows (SDOHCC TaskForReferralManagement).
var legal = map[string][]string{
	"draft":       {"requested", "cancelled", "entered-in-error"},
	"requested":   {"accepted", "rejected", "cancelled", "entered-in-error"},
	"received":    {"accepted", "rejected", "cancelled", "entered-in-error"},
	"accepted":    {"in-progress", "on-hold", "completed", "failed", "cancelled", "entered-in-error"},
	"ready":       {"in-progress", "on-hold", "completed", "failed", "cancelled", "entered-in-error"},
	"in-progress": {"on-hold", "completed", "failed", "cancelled", "entered-in-error"},
	"on-hold":     {"in-progress", "completed", "failed", "cancelled", "entered-in-error"},
	"rejected":    {"entered-in-error"}, "cancelled": {"entered-in-error"}, "failed": {"entered-in-error"},
	"completed": {"entered-in-error"}, "entered-in-error": {},
}

func taskWith(status string) map[string]any {
	return map[string]any{"resourceType": "Task", "status": status,
		"statusReason": map[string]any{"text": "why"},
		"output":       []any{map[string]any{"type": map[string]any{"text": "x"}, "valueString": "done"}},
		"owner":        map[string]any{"reference": "Organization/cbo"}, "requester": map[string]any{"reference": "Organization/plan"}}
}

func TestCheckTask_EveryTransition(t *testing.T) {
	admin := resources.CallerInfo{Admin: true}
	for _, from := range allStatuses {
		for _, to := range allStatuses {
			err := resources.CheckTask(admin, taskWith(from), taskWith(to))
			want := from == to || slices.Contains(legal[from], to)
			if (err == nil) != want {
				t.Errorf("%s → %s: %v, want legal=%v", from, to, err, want)
			}
			if err != nil && !resources.IsKind(err, resources.KindConflict) {
				t.Errorf("%s → %s: %v, want a 409", from, to, err)
			}
		}
	}
}

func TestCheckTask_WhoMaySetWhat(t *testing.T) {
	owner := resources.CallerInfo{Org: "Organization/cbo"}
	requester := resources.CallerInfo{Org: "Organization/plan"}
	other := resources.CallerInfo{Org: "Organization/elsewhere"}
	cases := []struct {
		from, to string
		caller   resources.CallerInfo
		kind     resources.Kind // 0: allowed
	}{
		{"requested", "accepted", owner, 0},
		{"requested", "accepted", requester, resources.KindForbidden},
		{"requested", "rejected", other, resources.KindForbidden},
		{"accepted", "in-progress", owner, 0},
		{"in-progress", "completed", owner, 0},
		{"in-progress", "failed", requester, resources.KindForbidden},
		{"draft", "requested", requester, 0},
		{"draft", "requested", owner, resources.KindForbidden},
		{"requested", "entered-in-error", requester, 0},
		{"requested", "entered-in-error", owner, resources.KindForbidden},
		{"requested", "cancelled", owner, 0},
		{"requested", "cancelled", requester, 0},
		{"requested", "cancelled", other, resources.KindForbidden},
		{"completed", "requested", requester, resources.KindConflict},
	}
	for _, tc := range cases {
		err := resources.CheckTask(tc.caller, taskWith(tc.from), taskWith(tc.to))
		if (tc.kind == 0) != (err == nil) || (tc.kind != 0 && !resources.IsKind(err, tc.kind)) {
			t.Errorf("%s → %s by %s: %v, want kind %d", tc.from, tc.to, tc.caller.Org, err, tc.kind)
		}
	}
}

func TestCheckTask_WhatAStatusNeeds(t *testing.T) {
	admin := resources.CallerInfo{Admin: true}
	for _, status := range []string{"rejected", "cancelled", "failed"} {
		next := taskWith(status)
		delete(next, "statusReason")
		if err := resources.CheckTask(admin, taskWith("requested"), next); !resources.IsKind(err, resources.KindUnprocessable) {
			t.Errorf("%s without statusReason: %v", status, err)
		}
	}
	next := taskWith("completed")
	delete(next, "output")
	if err := resources.CheckTask(admin, taskWith("in-progress"), next); !resources.IsKind(err, resources.KindUnprocessable) {
		t.Errorf("completed without output: %v", err)
	}
	if err := resources.CheckTask(resources.CallerInfo{Org: "Organization/plan"}, nil, taskWith("accepted")); !resources.IsKind(err, resources.KindConflict) {
		t.Errorf("a new Task that starts accepted: %v", err)
	}
}
