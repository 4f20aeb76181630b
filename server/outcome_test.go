package server

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/calaimfhir/calaimfhir/resources"
)

// TestErrorHandler_StatusTable checks the one place errors become responses: each kind gets
// its status, an OperationOutcome body and, where set, Retry-After. Unclassified errors are
// 500s whose cause stays out of the body.
func TestErrorHandler_StatusTable(t *testing.T) {
	cases := []struct {
		err    error
		status int
		code   string
	}{
		{resources.Errorf(resources.KindBadRequest, "x"), 400, "invalid"},
		{resources.Errorf(resources.KindUnauthorized, "x"), 401, "login"},
		{resources.Errorf(resources.KindForbidden, "x"), 403, "forbidden"},
		{resources.Errorf(resources.KindNotFound, "x"), 404, "not-found"},
		{resources.Errorf(resources.KindMethodNotAllowed, "x"), 405, "not-supported"},
		{resources.Errorf(resources.KindNotAcceptable, "x"), 406, "not-supported"},
		{resources.Errorf(resources.KindConflict, "x"), 409, "conflict"},
		{resources.Errorf(resources.KindGone, "x"), 410, "deleted"},
		{resources.Errorf(resources.KindPreconditionFailed, "x"), 412, "conflict"},
		{resources.Errorf(resources.KindTooLarge, "x"), 413, "too-long"},
		{resources.Errorf(resources.KindUnsupportedMediaType, "x"), 415, "not-supported"},
		{resources.Errorf(resources.KindUnprocessable, "x"), 422, "processing"},
		{resources.Errorf(resources.KindTooManyRequests, "x"), 429, "throttled"},
		{&resources.Error{Kind: resources.KindUnavailable, Message: "x", RetryAfter: 2}, 503, "transient"},
		{errors.New("secret cause"), 500, "exception"},
		{echo.ErrMethodNotAllowed, 405, "not-supported"},
		{echo.ErrNotFound, 404, "not-found"},
	}
	h := errorHandler(slog.New(slog.NewTextHandler(io.Discard, nil)))
	e := echo.New()
	for _, tc := range cases {
		rec := httptest.NewRecorder()
		h(tc.err, e.NewContext(httptest.NewRequest("GET", "/fhir/Patient/1", nil), rec))
		if rec.Code != tc.status {
			t.Errorf("%v: status %d, want %d", tc.err, rec.Code, tc.status)
			continue
		}
		var oo outcome
		if err := json.Unmarshal(rec.Body.Bytes(), &oo); err != nil || oo.ResourceType != "OperationOutcome" || len(oo.Issue) != 1 {
			t.Errorf("%v: body %s", tc.err, rec.Body)
			continue
		}
		if string(oo.Issue[0].Code) != tc.code {
			t.Errorf("%v: issue code %s, want %s", tc.err, oo.Issue[0].Code, tc.code)
		}
		if tc.status == http.StatusServiceUnavailable && rec.Header().Get("Retry-After") != "2" {
			t.Errorf("503 without Retry-After")
		}
		if tc.status == 500 && oo.Issue[0].Diagnostics != "internal error" {
			t.Errorf("500 leaks its cause: %q", oo.Issue[0].Diagnostics)
		}
	}
}
