package server

import (
	"encoding/json"

	"github.com/calaimfhir/calaimfhir/internal/patch"
	"github.com/calaimfhir/calaimfhir/resources"
)

// Patcher is the PATCH implementation of internal/patch, for Config.Patcher.
func Patcher(doc map[string]any, format resources.PatchFormat, body []byte) (map[string]any, error) {
	if format == resources.JSONPatch {
		return patch.JSON(doc, body)
	}
	var params map[string]any
	if err := json.Unmarshal(body, &params); err != nil {
		return nil, resources.Wrap(resources.KindBadRequest, err, "a FHIRPath Patch is a Parameters resource in JSON")
	}
	return patch.FHIRPath(doc, params)
}
