package server

import (
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/calaimfhir/calaimfhir/resources"
)

// jsonTypes are the media types this server reads and writes; XML is not offered.
var jsonTypes = map[string]bool{
	"application/fhir+json": true,
	"application/json":      true,
	"application/json+fhir": true, // DSTU2-era clients still send it
}

var formatAliases = map[string]bool{"json": true}

// negotiate enforces the JSON-only contract: a response in another format is 406, a body in
// another format is 415.
func (s *Server) negotiate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		if f := c.QueryParam("_format"); f != "" {
			mt, _, _ := mime.ParseMediaType(f)
			if !formatAliases[f] && !jsonTypes[mt] {
				return resources.Errorf(resources.KindNotAcceptable, "_format %q is not supported: this server speaks application/fhir+json only", f)
			}
		} else if !acceptsJSON(req.Header.Get(echo.HeaderAccept)) {
			return resources.Errorf(resources.KindNotAcceptable, "this server answers in application/fhir+json only")
		}
		return next(c)
	}
}

// acceptsJSON reports whether an Accept header admits a JSON answer.
func acceptsJSON(accept string) bool {
	if strings.TrimSpace(accept) == "" {
		return true
	}
	for _, part := range strings.Split(accept, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		if params["q"] == "0" {
			continue
		}
		if mt == "*/*" || mt == "application/*" || jsonTypes[mt] {
			return true
		}
	}
	return false
}

// readResourceBody checks the Content-Type and reads the body within the size limit.
func (s *Server) readResourceBody(c echo.Context) ([]byte, error) {
	req := c.Request()
	ct := req.Header.Get(echo.HeaderContentType)
	mt, _, err := mime.ParseMediaType(ct)
	if ct == "" || err != nil || !jsonTypes[mt] {
		return nil, resources.Errorf(resources.KindUnsupportedMediaType, "send the resource as application/fhir+json (got %q)", ct)
	}
	body, err := s.readBody(c)
	if err == nil && len(body) == 0 {
		err = resources.Errorf(resources.KindBadRequest, "the body is empty: send a FHIR resource")
	}
	return body, err
}

func (s *Server) readBody(c echo.Context) ([]byte, error) {
	req := c.Request()
	if req.ContentLength > s.cfg.MaxBodyBytes {
		return nil, resources.Errorf(resources.KindTooLarge, "the body is larger than the limit of %d bytes", s.cfg.MaxBodyBytes)
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), req.Body, s.cfg.MaxBodyBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, resources.Errorf(resources.KindTooLarge, "the body is larger than the limit of %d bytes", s.cfg.MaxBodyBytes)
		}
		return nil, resources.Wrap(resources.KindBadRequest, err, "the body could not be read")
	}
	// A bulk request takes its turn now that its body is here (bulk.go).
	if err := enterBulkSlot(req.Context()); err != nil {
		return nil, err
	}
	return body, nil
}
