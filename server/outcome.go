package server

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/calaimfhir/calaimfhir/resources"
)

// outcome is the JSON form of an OperationOutcome.
type outcome struct {
	ResourceType string         `json:"resourceType"`
	Issue        []outcomeIssue `json:"issue"`
}

type outcomeIssue struct {
	Severity    resources.Severity  `json:"severity"`
	Code        resources.IssueType `json:"code"`
	Diagnostics string              `json:"diagnostics,omitempty"`
	Expression  []string            `json:"expression,omitempty"`
}

func newOutcome(issues []resources.Issue) outcome {
	o := outcome{ResourceType: "OperationOutcome"}
	for _, is := range issues {
		o.Issue = append(o.Issue, outcomeIssue{Severity: is.Severity, Code: is.Code, Diagnostics: is.Diagnostics, Expression: is.Expression})
	}
	return o
}

func outcomeJSON(issues []resources.Issue) []byte {
	b, _ := json.Marshal(newOutcome(issues))
	return b
}

// httpErrorKinds maps the errors Echo raises itself (routing, body limit) to domain kinds.
var httpErrorKinds = map[int]resources.Kind{
	http.StatusNotFound:              resources.KindNotFound,
	http.StatusMethodNotAllowed:      resources.KindMethodNotAllowed,
	http.StatusRequestEntityTooLarge: resources.KindTooLarge,
	http.StatusUnsupportedMediaType:  resources.KindUnsupportedMediaType,
	http.StatusBadRequest:            resources.KindBadRequest,
	http.StatusUnauthorized:          resources.KindUnauthorized,
	http.StatusForbidden:             resources.KindForbidden,
	http.StatusTooManyRequests:       resources.KindTooManyRequests,
	http.StatusServiceUnavailable:    resources.KindUnavailable,
}

// toDomainError classifies any error returned by a handler or by Echo.
func toDomainError(err error) *resources.Error {
	var re *resources.Error
	if errors.As(err, &re) {
		return re
	}
	var he *echo.HTTPError
	if errors.As(err, &he) {
		kind, ok := httpErrorKinds[he.Code]
		if !ok {
			kind = resources.KindInternal
		}
		msg := http.StatusText(he.Code)
		if kind == resources.KindNotFound {
			msg = "no such FHIR endpoint"
		}
		return &resources.Error{Kind: kind, Message: msg, Err: err}
	}
	return &resources.Error{Kind: resources.KindInternal, Message: "internal error", Err: err}
}

// errorHandler is Echo's HTTPErrorHandler: the one place errors become responses. Internal
// errors are logged with their cause (which never holds request bodies) and answered with a
// generic message.
func errorHandler(logger *slog.Logger) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		e := toDomainError(err)
		status := e.Kind.Status()
		if e.Kind == resources.KindInternal {
			logger.Error("internal error", "request_id", requestID(c), "error", e.Err)
		}
		if e.RetryAfter > 0 {
			c.Response().Header().Set("Retry-After", strconv.Itoa(e.RetryAfter))
		}
		if e.Kind == resources.KindMethodNotAllowed {
			if allow := c.Response().Header().Get(echo.HeaderAllow); allow == "" {
				c.Response().Header().Set(echo.HeaderAllow, "GET, POST, PUT, DELETE")
			}
		}
		if c.Request().Method == http.MethodHead {
			c.NoContent(status)
			return
		}
		c.Blob(status, fhirJSON, outcomeJSON(e.OutcomeIssues()))
	}
}
