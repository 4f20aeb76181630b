package claims

import (
	"fmt"

	"github.com/calaimfhir/calaimfhir/profiles"
)

// ErrorSystem is the code system of the check codes in ClaimResponse.error.code.
const ErrorSystem = profiles.Base + "/CodeSystem/claim-check"

// The stable check codes (see the package documentation).
const (
	ClaimInvalid         = "claim-invalid"
	ClaimNonconformant   = "claim-nonconformant"
	PatientNotFound      = "patient-not-found"
	CoverageNotFound     = "coverage-not-found"
	CoverageMismatch     = "coverage-mismatch"
	CoverageInactive     = "coverage-inactive"
	ProviderNPIInvalid   = "provider-npi-invalid"
	ProviderUnknown      = "provider-unknown"
	ProviderNotSubmitter = "provider-not-submitter"
	CodeNotAllowed       = "code-not-allowed"
	ModifierNotAllowed   = "modifier-not-allowed"
	ServiceNotEffective  = "service-not-effective"
	ReferralMissing      = "referral-missing"
	SupervisorMissing    = "supervisor-missing"
	UnitsInvalid         = "units-invalid"
	GroupSizeMismatch    = "group-size-mismatch"
	DiagnosisInvalid     = "dx-invalid"
	DiagnosisNotBillable = "dx-not-billable"
	Duplicate            = "duplicate"
	// ECMCHWOverlap is a warning, not an error.
	ECMCHWOverlap = "ecm-chw-overlap"
)

// Problem is one finding about a claim: a check code, a message for the submitter, and the
// item it concerns (0 for the whole claim).
type Problem struct {
	Code    string
	Message string
	Item    int
}

func problem(code, format string, args ...any) *Problem {
	return &Problem{Code: code, Message: fmt.Sprintf(format, args...)}
}

func (p *Problem) Error() string { return p.Code + ": " + p.Message }
