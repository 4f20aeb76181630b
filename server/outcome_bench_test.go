package server

import (
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/calaimfhir/calaimfhir/resources"
)

// BenchmarkErrorHandler writes OperationOutcomes as every failed request does: a not-found
// (one issue), a validation failure with ten issues, and an Echo routing error.
//
//	go test ./server -run '^$' -bench ErrorHandler -count 6
func BenchmarkErrorHandler(b *testing.B) {
	var many []resources.Issue
	for i := range 10 {
		many = append(many, resources.Issue{Severity: resources.SeverityError, Code: resources.IssueRequired,
			Expression: []string{"Claim.item[" + string(rune('0'+i)) + "].productOrService"}, Diagnostics: "missing required field"})
	}
	cases := []struct {
		name string
		err  error
	}{
		{"not-found", resources.Errorf(resources.KindNotFound, "Task/abc is not known")},
		{"unprocessable-10-issues", &resources.Error{Kind: resources.KindUnprocessable, Message: "the resource is not valid", Issues: many}},
		{"echo-405", echo.NewHTTPError(http.StatusMethodNotAllowed)},
		{"plain-error", errors.New("unclassified")},
	}
	h := errorHandler(slog.New(slog.NewJSONHandler(io.Discard, nil)))
	e := echo.New()
	for _, tc := range cases {
		b.Run("case="+tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				rec := httptest.NewRecorder()
				c := e.NewContext(httptest.NewRequest("GET", "/fhir/Task/abc", nil), rec)
				h(tc.err, c)
				if rec.Code < 400 {
					b.Fatalf("status %d", rec.Code)
				}
			}
		})
	}
}
