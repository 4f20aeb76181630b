package server

import (
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/calaimfhir/calaimfhir/resources"
)

// The CapabilityStatement lists exactly the interactions and search parameters that work.
// Interactions the server does not offer yet (patch, transaction, system history) are absent.

type capSearchParam struct {
	Name          string `json:"name"`
	Definition    string `json:"definition,omitempty"`
	Type          string `json:"type"`
	Documentation string `json:"documentation,omitempty"`
}

type capInteraction struct {
	Code string `json:"code"`
}

type capResource struct {
	Type              string           `json:"type"`
	Profile           string           `json:"profile"`
	Interaction       []capInteraction `json:"interaction"`
	Versioning        string           `json:"versioning"`
	ReadHistory       bool             `json:"readHistory"`
	UpdateCreate      bool             `json:"updateCreate"`
	ConditionalCreate bool             `json:"conditionalCreate"`
	ConditionalRead   string           `json:"conditionalRead"`
	ConditionalUpdate bool             `json:"conditionalUpdate"`
	ConditionalDelete string           `json:"conditionalDelete"`
	ReferencePolicy   []string         `json:"referencePolicy"`
	SearchParam       []capSearchParam `json:"searchParam"`
}

var commonSearchParams = []capSearchParam{
	{Name: "_id", Definition: "http://hl7.org/fhir/SearchParameter/Resource-id", Type: "token"},
	{Name: "_lastUpdated", Definition: "http://hl7.org/fhir/SearchParameter/Resource-lastUpdated", Type: "date",
		Documentation: "prefixes eq ne lt gt le ge sa eb; precision year to fractional seconds"},
}

func (s *Server) capabilityStatement() []byte {
	s.capOnce.Do(func() {
		conditionalDelete := "single"
		if s.cfg.MultipleConditionalDelete {
			conditionalDelete = "multiple"
		}
		var rs []capResource
		for _, typ := range resources.Types {
			r := capResource{
				Type:    typ,
				Profile: "http://hl7.org/fhir/StructureDefinition/" + typ,
				Interaction: []capInteraction{{"read"}, {"vread"}, {"update"}, {"patch"}, {"delete"},
					{"history-instance"}, {"history-type"}, {"create"}, {"search-type"}},
				Versioning:        "versioned",
				ReadHistory:       true,
				UpdateCreate:      true,
				ConditionalCreate: true,
				ConditionalRead:   "not-supported",
				ConditionalUpdate: true,
				ConditionalDelete: conditionalDelete,
				SearchParam:       append([]capSearchParam{}, commonSearchParams...),
			}
			for _, p := range resources.Params(typ) {
				r.SearchParam = append(r.SearchParam, capSearchParam{Name: p.Name, Definition: p.Definition(typ), Type: string(p.Type)})
			}
			for _, name := range resources.CompositeNames(typ) {
				p := resources.Param{Name: name}
				r.SearchParam = append(r.SearchParam, capSearchParam{Name: name, Definition: p.Definition(typ), Type: "composite"})
			}
			r.ReferencePolicy = []string{"literal", "logical", "local"}
			rs = append(rs, r)
		}
		cs := map[string]any{
			"resourceType": "CapabilityStatement",
			"status":       "active",
			"date":         s.started.Format(time.RFC3339),
			"publisher":    "calaimfhir",
			"kind":         "instance",
			"software":     map[string]string{"name": "calaimfhir", "version": s.cfg.Version},
			"implementation": map[string]string{
				"description": "calaimfhir: FHIR R4 exchange for Medi-Cal CalAIM (ECM, Community Supports, CHW)",
				"url":         s.cfg.BaseURL,
			},
			"fhirVersion": "4.0.1",
			"format":      []string{"application/fhir+json", "json"},
			"rest": []map[string]any{{
				"mode":        "server",
				"resource":    rs,
				"interaction": []capInteraction{{"transaction"}, {"batch"}, {"search-system"}},
				"searchParam": []capSearchParam{
					{Name: "_count", Type: "number", Documentation: "page size, at most 1000 (default 20); 0 returns only the total"},
					{Name: "_sort", Type: "string", Documentation: "_lastUpdated or -_lastUpdated; ties broken by id"},
					{Name: "_total", Type: "token", Documentation: "accurate or estimate count every match; by default the total is given only when the first page holds every match; none omits it"},
					{Name: "_summary", Type: "token", Documentation: "true, text, data, count or false (true, text and data also on read and vread); results are tagged SUBSETTED"},
					{Name: "_include", Type: "special", Documentation: "Type:param[:Target] or *; :iterate follows up to 3 rounds"},
					{Name: "_revinclude", Type: "special", Documentation: "Type:param[:Target]; :iterate supported"},
					{Name: "_elements", Type: "special", Documentation: "top-level elements; results are tagged SUBSETTED"},
					{Name: "_has", Type: "special", Documentation: "_has:Type:reference:parameter=value, one level"},
				},
			}},
		}
		s.capJSON, _ = json.Marshal(s.withConformance(cs))
	})
	return s.capJSON
}

type capCache struct {
	capOnce sync.Once
	capJSON []byte
	started time.Time
}

func (s *Server) capabilities(c echo.Context) error {
	return c.Blob(http.StatusOK, fhirJSON, s.capabilityStatement())
}
