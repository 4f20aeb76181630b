package resources

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// The referral Task workflow of the Gravity SDOH Clinical Care IG
// (http://hl7.org/fhir/us/sdoh-clinicalcare, TaskForReferralManagement), as CalAIM plans and
// CBOs use it: the requester (plan, clinic) sends a Task; the owner (the CBO) accepts or
// rejects it, works it and closes it.

// CallerInfo is who is writing, as the workflow needs it.
type CallerInfo struct {
	Org   string // "Organization/id"
	Admin bool   // administrators may set any status (transitions must still be legal)
	Role  string // RoleAdmin, RolePlan, RoleCBO or RoleProvider (tenancy.go)
}

// Statuses each side may set. Cancelled is open to both.
var (
	ownerStatuses     = []string{"accepted", "rejected", "in-progress", "on-hold", "failed", "completed"}
	requesterStatuses = []string{"draft", "requested", "entered-in-error"}
)

// taskTransitions lists the statuses a Task may move to from each status.
var taskTransitions = map[string][]string{
	"draft":       {"requested", "cancelled", "entered-in-error"},
	"requested":   {"accepted", "rejected", "cancelled", "entered-in-error"},
	"received":    {"accepted", "rejected", "cancelled", "entered-in-error"},
	"accepted":    {"in-progress", "on-hold", "completed", "failed", "cancelled", "entered-in-error"},
	"ready":       {"in-progress", "on-hold", "completed", "failed", "cancelled", "entered-in-error"},
	"in-progress": {"on-hold", "completed", "failed", "cancelled", "entered-in-error"},
	"on-hold":     {"in-progress", "completed", "failed", "cancelled", "entered-in-error"},
	// rejected, cancelled, failed, completed: closed; only marking them entered-in-error.
	"rejected":         {"entered-in-error"},
	"cancelled":        {"entered-in-error"},
	"failed":           {"entered-in-error"},
	"completed":        {"entered-in-error"},
	"entered-in-error": {},
}

// CheckTask applies the workflow to a Task write: old is the current version (nil for a
// create), next the new one. Returns KindConflict for an illegal transition, KindForbidden
// when the caller's organization may not set the status, and KindUnprocessable when the new
// status lacks what it needs (statusReason, output).
func CheckTask(caller CallerInfo, old, next map[string]any) error {
	status, _ := next["status"].(string)
	var issues []Issue
	switch status {
	case "rejected", "cancelled", "failed":
		if !hasReason(next["statusReason"]) {
			issues = append(issues, Issue{Severity: SeverityError, Code: IssueRequired, Expression: []string{"Task.statusReason"},
				Diagnostics: fmt.Sprintf("a %s Task needs a statusReason saying why", status)})
		}
	case "completed":
		if outs, _ := next["output"].([]any); len(outs) == 0 {
			issues = append(issues, Issue{Severity: SeverityError, Code: IssueRequired, Expression: []string{"Task.output"},
				Diagnostics: "a completed Task needs an output (the Procedure or result of the referral)"})
		}
	}
	if len(issues) > 0 {
		return &Error{Kind: KindUnprocessable, Message: "the Task status lacks what it needs", Issues: issues}
	}
	if old == nil {
		if !caller.Admin && status != "draft" && status != "requested" {
			return Errorf(KindConflict, "a new referral Task starts as draft or requested, not %s", status)
		}
		if !caller.Admin && caller.Org != "" && refOf(next["requester"]) != "" && refOf(next["requester"]) != caller.Org {
			return Errorf(KindForbidden, "only the requester's organization may create this Task")
		}
		return nil
	}
	was, _ := old["status"].(string)
	if was == status {
		return nil
	}
	if !slices.Contains(taskTransitions[was], status) {
		return Errorf(KindConflict, "a Task cannot go from %s to %s", was, status)
	}
	if caller.Admin {
		return nil
	}
	owner, requester := refOf(old["owner"]), refOf(old["requester"])
	switch {
	case slices.Contains(ownerStatuses, status):
		if caller.Org == "" || caller.Org != owner {
			return Errorf(KindForbidden, "only the Task's owner sets it to %s", status)
		}
	case slices.Contains(requesterStatuses, status):
		if caller.Org == "" || caller.Org != requester {
			return Errorf(KindForbidden, "only the Task's requester sets it to %s", status)
		}
	case status == "cancelled":
		if caller.Org == "" || (caller.Org != owner && caller.Org != requester) {
			return Errorf(KindForbidden, "only the Task's owner or requester cancels it")
		}
	}
	return nil
}

func hasReason(v any) bool {
	m, ok := v.(map[string]any)
	if !ok {
		return false
	}
	if text, _ := m["text"].(string); strings.TrimSpace(text) != "" {
		return true
	}
	codings, _ := m["coding"].([]any)
	return len(codings) > 0
}

func refOf(v any) string {
	m, _ := v.(map[string]any)
	ref, _ := m["reference"].(string)
	return ref
}

// checkTaskWrite runs CheckTask for a Task write when the service knows its caller. old is
// the current version, decoded (nil for a create).
func (s *Service) checkTaskWrite(ctx context.Context, typ string, old, next map[string]any) error {
	if typ != "Task" || s.Caller == nil {
		return nil
	}
	caller, ok := s.Caller(ctx)
	if !ok {
		return nil
	}
	return CheckTask(caller, old, next)
}
