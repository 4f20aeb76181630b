package mongostore_test

import (
	"testing"

	"github.com/calaimfhir/calaimfhir/internal/fhirtest"
	"github.com/calaimfhir/calaimfhir/internal/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, fhirtest.MongoDB)
}
