package resources

import (
	"errors"
	"fmt"
	"net/http"
)

// Kind classifies a failure. Each kind maps to exactly one HTTP status and a default FHIR
// issue type in kindTable; the server writes every error through that table.
type Kind int

const (
	KindInternal             Kind = iota // 500, exception: anything not classified
	KindBadRequest                       // 400, structure/invalid: unparseable input, bad URL
	KindUnprocessable                    // 422, processing: parsed but violates R4 or a profile
	KindNotFound                         // 404, not-found
	KindGone                             // 410, deleted
	KindConflict                         // 409, conflict: version clash without If-Match, id reuse
	KindPreconditionFailed               // 412, conflict: If-Match mismatch, several conditional matches
	KindMethodNotAllowed                 // 405, not-supported
	KindNotAcceptable                    // 406, not-supported
	KindUnsupportedMediaType             // 415, not-supported
	KindTooLarge                         // 413, too-long
	KindUnavailable                      // 503, transient: store unreachable or busy
	KindUnauthorized                     // 401, login
	KindForbidden                        // 403, forbidden
	KindTooManyRequests                  // 429, throttled
)

type kindInfo struct {
	status int
	code   IssueType
}

var kindTable = map[Kind]kindInfo{
	KindInternal:             {http.StatusInternalServerError, IssueException},
	KindBadRequest:           {http.StatusBadRequest, IssueInvalid},
	KindUnprocessable:        {http.StatusUnprocessableEntity, IssueProcessing},
	KindNotFound:             {http.StatusNotFound, IssueNotFound},
	KindGone:                 {http.StatusGone, IssueDeleted},
	KindConflict:             {http.StatusConflict, IssueConflict},
	KindPreconditionFailed:   {http.StatusPreconditionFailed, IssueConflict},
	KindMethodNotAllowed:     {http.StatusMethodNotAllowed, IssueNotSupported},
	KindNotAcceptable:        {http.StatusNotAcceptable, IssueNotSupported},
	KindUnsupportedMediaType: {http.StatusUnsupportedMediaType, IssueNotSupported},
	KindTooLarge:             {http.StatusRequestEntityTooLarge, IssueTooLong},
	KindUnavailable:          {http.StatusServiceUnavailable, IssueTransient},
	KindUnauthorized:         {http.StatusUnauthorized, IssueLogin},
	KindForbidden:            {http.StatusForbidden, IssueForbidden},
	KindTooManyRequests:      {http.StatusTooManyRequests, IssueThrottled},
}

// Status is the HTTP status for the kind.
func (k Kind) Status() int {
	if info, ok := kindTable[k]; ok {
		return info.status
	}
	return http.StatusInternalServerError
}

// IssueType is a code from http://hl7.org/fhir/issue-type.
type IssueType string

const (
	IssueInvalid        IssueType = "invalid"
	IssueStructure      IssueType = "structure"
	IssueRequired       IssueType = "required"
	IssueValue          IssueType = "value"
	IssueInvariant      IssueType = "invariant"
	IssueProcessing     IssueType = "processing"
	IssueNotFound       IssueType = "not-found"
	IssueDeleted        IssueType = "deleted"
	IssueConflict       IssueType = "conflict"
	IssueDuplicate      IssueType = "duplicate"
	IssueMultiple       IssueType = "multiple-matches"
	IssueNotSupported   IssueType = "not-supported"
	IssueTooLong        IssueType = "too-long"
	IssueTransient      IssueType = "transient"
	IssueException      IssueType = "exception"
	IssueLogin          IssueType = "login"
	IssueForbidden      IssueType = "forbidden"
	IssueThrottled      IssueType = "throttled"
	IssueInformational  IssueType = "informational"
	IssueBusinessRule   IssueType = "business-rule"
	IssueCodeInvalid    IssueType = "code-invalid"
	IssueIncomplete     IssueType = "incomplete"
	IssueTooCostly      IssueType = "too-costly"
	IssueSecurity       IssueType = "security"
	IssueUnknownElement IssueType = "unknown"
)

// Severity is a code from http://hl7.org/fhir/issue-severity.
type Severity string

const (
	SeverityFatal       Severity = "fatal"
	SeverityError       Severity = "error"
	SeverityWarning     Severity = "warning"
	SeverityInformation Severity = "information"
)

// Issue is one OperationOutcome.issue. Diagnostics may echo parts of the request (it goes to the
// caller), so it must never be logged: log lines carry only Kind and Code.
type Issue struct {
	Severity    Severity
	Code        IssueType
	Diagnostics string
	Expression  []string // FHIRPath of the element concerned, e.g. "Patient.birthDate"
}

// Error is the one error type of the domain. Handlers return it; the server turns it into an
// OperationOutcome with Kind's status. Errors of any other type are internal (500).
type Error struct {
	Kind    Kind
	Message string  // plain-language summary, safe to return to the caller
	Issues  []Issue // details; when empty, one issue is built from Message
	Err     error   // cause, for logs and errors.Is; never sent to the caller
	// RetryAfter, when positive, is sent as a Retry-After header (seconds).
	RetryAfter int
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %v", e.Message, e.Err)
	}
	return e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// OutcomeIssues returns the issues to report, building one from Message when none were set.
func (e *Error) OutcomeIssues() []Issue {
	if len(e.Issues) > 0 {
		return e.Issues
	}
	info, ok := kindTable[e.Kind]
	if !ok {
		info = kindTable[KindInternal]
	}
	return []Issue{{Severity: SeverityError, Code: info.code, Diagnostics: e.Message}}
}

// Errorf builds an Error of the given kind with a formatted message.
func Errorf(kind Kind, format string, args ...any) *Error {
	return &Error{Kind: kind, Message: fmt.Sprintf(format, args...)}
}

// Wrap builds an Error of the given kind around a cause that stays out of responses.
func Wrap(kind Kind, err error, message string) *Error {
	return &Error{Kind: kind, Message: message, Err: err}
}

// KindOf reports the Kind of err; errors that are not *Error are internal.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return KindInternal
}

// IsKind reports whether err is an *Error of the given kind.
func IsKind(err error, kind Kind) bool {
	var e *Error
	return errors.As(err, &e) && e.Kind == kind
}
