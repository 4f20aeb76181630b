package resources

import (
	"context"
	"slices"
	"strings"
	"time"
)

// The audit trail: one AuditRecord per request the server answered, kept apart from the FHIR
// resources (its own SQLite tables, its own MongoDB collection) and served as R4 AuditEvent
// resources to administrators only (https://hl7.org/fhir/R4/auditevent.html).
//
// A record says who asked (token subject, client id, organization, role, network address),
// what they asked for (the interaction, the resource type and ids, the query string of a
// search or condition), the action (C R U D E), the outcome and when. It never holds a
// resource body, an OperationOutcome's diagnostics or any other part of a request or response
// body. Query strings can name patients (Patient?name=garcia), so the audit store is as
// sensitive as the resources themselves; logs never carry any of it.

// AuditLog is implemented by stores that keep the audit trail. Both stores of this project do;
// the server records nothing when its store does not.
type AuditLog interface {
	// AppendAudit stores the records, whose IDs are set. A record whose ID is already stored
	// is skipped, so after an error (KindUnavailable when the database cannot be reached) the
	// caller retries the whole batch without doubling the records that did get in.
	AppendAudit(ctx context.Context, recs []*AuditRecord) error

	// SearchAudit returns one page of records matching q, newest first (by Recorded, then ID).
	SearchAudit(ctx context.Context, q *AuditQuery) (*AuditPage, error)

	// ReadAudit returns one record; KindNotFound when there is none with that id.
	ReadAudit(ctx context.Context, id string) (*AuditRecord, error)

	// PurgeAudit deletes the records recorded before the given instant and returns how many.
	PurgeAudit(ctx context.Context, before time.Time) (int64, error)
}

// Audit actions (http://hl7.org/fhir/audit-event-action).
const (
	AuditCreate  = "C"
	AuditRead    = "R"
	AuditUpdate  = "U"
	AuditDelete  = "D"
	AuditExecute = "E" // searches, Bundles, operations
)

// Audit outcomes (http://hl7.org/fhir/audit-event-outcome), derived from the HTTP status.
const (
	AuditSuccess        = 0  // 1xx-3xx
	AuditMinorFailure   = 4  // 4xx: the request was refused
	AuditSeriousFailure = 8  // 5xx but 503
	AuditMajorFailure   = 12 // 503: the store is not available for use
)

// AuditOutcome maps an HTTP status to an audit outcome code.
func AuditOutcome(status int) int {
	switch {
	case status < 400:
		return AuditSuccess
	case status < 500:
		return AuditMinorFailure
	case status == 503:
		return AuditMajorFailure
	}
	return AuditSeriousFailure
}

// AuditRecord is one request as the audit trail keeps it. Strings hold identifiers, codes and
// query strings only, never resource contents.
type AuditRecord struct {
	ID       string    `json:"id"`
	Recorded time.Time `json:"recorded"` // when the answer was known (UTC, microseconds)
	Start    time.Time `json:"start"`    // when the request arrived

	// Subtype is the FHIR interaction (http://hl7.org/fhir/restful-interaction: read, vread,
	// update, patch, delete, history-instance, history-type, create, search-type,
	// search-system, capabilities, transaction, batch, operation), or "" for a request that
	// matched no FHIR endpoint.
	Subtype string `json:"subtype,omitempty"`
	Action  string `json:"action"`  // AuditCreate ... AuditExecute
	Outcome int    `json:"outcome"` // AuditSuccess ... AuditMajorFailure
	Status  int    `json:"status"`  // the HTTP status answered
	Method  string `json:"method"`  // the HTTP method

	// Who: from the verified access token (empty when the request had none, or an invalid
	// one), and the network peer.
	Subject   string `json:"sub,omitempty"`
	ClientID  string `json:"clientId,omitempty"`
	Org       string `json:"org,omitempty"` // "Organization/<id>"
	Role      string `json:"role,omitempty"`
	Address   string `json:"address,omitempty"`
	RequestID string `json:"requestId,omitempty"`

	// What.
	Type      string   `json:"type,omitempty"`      // the resource type the request named
	Entities  []string `json:"entities,omitempty"`  // "Type/id" read, "Type/id/_history/n" written or vread
	Query     string   `json:"query,omitempty"`     // the query string of a search, history or conditional interaction (If-None-Exist for a conditional create), as sent
	Operation string   `json:"operation,omitempty"` // "$name" of an operation
	Path      string   `json:"path,omitempty"`      // the URL path, only when no FHIR endpoint matched
}

// AuditQuery selects audit records. Within a clause, values are alternatives (OR); clauses
// and fields all hold together (AND). Empty fields select everything.
type AuditQuery struct {
	From, To time.Time // Recorded in [From, To); zero means unbounded
	// Keys are clauses over AuditKeys: a record matches a clause when it has one of its keys.
	Keys     [][]string
	Actions  []string
	Outcomes []int
	Subtypes []string
	Count    int          // page size (at least 1)
	After    *AuditCursor // newest first: records strictly older than the cursor
}

// AuditPage is one page of records, newest first.
type AuditPage struct {
	Records []*AuditRecord
	Next    *AuditCursor // nil on the last page
}

// AuditCursor is the position of the last record of a page.
type AuditCursor struct {
	Recorded time.Time
	ID       string
}

// Prefixes of the audit search keys. An agent key names a caller by token subject, client id
// or organization; an entity key a resource (any version); an entity-type key a type.
const (
	AuditAgentKey      = "a|"
	AuditEntityKey     = "e|"
	AuditEntityTypeKey = "t|"
)

// AuditKeys are the values a record is found by (agent, entity, entity-type), computed the
// same way by both stores.
func AuditKeys(r *AuditRecord) []string {
	var keys []string
	add := func(k string) {
		if !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	for _, who := range []string{r.Subject, r.ClientID, r.Org} {
		if who != "" {
			add(AuditAgentKey + who)
		}
	}
	if r.Type != "" {
		add(AuditEntityTypeKey + r.Type)
	}
	for _, e := range r.Entities {
		ref, _, _ := strings.Cut(e, "/_history/")
		add(AuditEntityKey + ref)
		if typ, _, ok := strings.Cut(ref, "/"); ok {
			add(AuditEntityTypeKey + typ)
		}
	}
	return keys
}

// Matches reports whether r satisfies q's filters (not its paging): the in-memory meaning of
// an AuditQuery, which both stores' tests check their answers against.
func (q *AuditQuery) Matches(r *AuditRecord) bool {
	if !q.From.IsZero() && r.Recorded.Before(q.From) {
		return false
	}
	if !q.To.IsZero() && !r.Recorded.Before(q.To) {
		return false
	}
	if len(q.Actions) > 0 && !slices.Contains(q.Actions, r.Action) {
		return false
	}
	if len(q.Outcomes) > 0 && !slices.Contains(q.Outcomes, r.Outcome) {
		return false
	}
	if len(q.Subtypes) > 0 && !slices.Contains(q.Subtypes, r.Subtype) {
		return false
	}
	keys := AuditKeys(r)
	for _, clause := range q.Keys {
		if !slices.ContainsFunc(clause, func(k string) bool { return slices.Contains(keys, k) }) {
			return false
		}
	}
	return true
}
