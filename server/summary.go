package server

import (
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/calaimfhir/calaimfhir/resources"
)

// shapeRead applies _summary and _elements to a read or vread, as a search applies them to
// each match (https://hl7.org/fhir/R4/search.html#summary): the resource is trimmed and marked
// SUBSETTED. _summary=count means nothing for one resource and is refused, like an unknown mode.
func shapeRead(c echo.Context, raw []byte) ([]byte, error) {
	params := c.QueryParams()
	summary := params.Get("_summary")
	switch summary {
	case "", "false":
		summary = ""
	case resources.SummaryTrue, resources.SummaryText, resources.SummaryData:
	default:
		return nil, resources.Errorf(resources.KindBadRequest, "_summary on a read takes true, text, data or false")
	}
	var elements []string
	for _, v := range params["_elements"] {
		for _, e := range strings.Split(v, ",") {
			if e = strings.TrimSpace(e); e != "" {
				elements = append(elements, e)
			}
		}
	}
	return resources.ShapeResource(raw, summary, elements), nil
}
