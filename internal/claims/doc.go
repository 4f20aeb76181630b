// Package claims checks CalAIM professional claims (CHW, ECM and Community Supports) the way
// a plan's front end would, answers each with a ClaimResponse, and writes the two exports
// CBOs need: a CSV invoice and an X12 837P (005010X222A1) file.
//
// The checks are plain functions over decoded Claims and the facts a Lookup fetches for a
// whole submission at once (patients, coverages, organizations, referrals, keys of claims
// already accepted). The server implements Lookup with its resources.Service, acting on its
// own behalf (resources.AsSystem); only the ClaimResponses go back to the caller.
//
// Code rules come from Codes: Rules reads the embedded CalAIM service catalog (catalog.json,
// replaceable per deployment) and the ICD-10-CM Z-code table (zcodes.json).
//
// Error codes (ClaimResponse.error.code, system ErrorSystem); "item" ones carry itemSequence
// and reject that item only, the others reject the whole claim:
//
//	claim-invalid          the Claim is not valid FHIR R4 (it is not stored)
//	claim-nonconformant    the Claim does not meet the CalAIMClaim rules (element named)
//	patient-not-found      Claim.patient is not a stored Patient
//	coverage-not-found     the focal insurance's Coverage is not stored
//	coverage-mismatch      the Coverage's beneficiary is not the claim's patient
//	coverage-inactive      the Coverage is not active (claim), or not on the item's date (item)
//	provider-npi-invalid   the billing provider has no NPI or it fails the Luhn check
//	provider-unknown       the billing provider is not a known (active) Organization
//	provider-not-submitter a CBO submitted a claim billed by another organization
//	code-not-allowed       item: the code is not in the CalAIM catalog
//	modifier-not-allowed   item: the modifiers do not fit the code's catalog entry
//	service-not-effective  item: the service is not billable on the date (G0019/G0022 before 2025-04-01)
//	referral-missing       item: no authorizing ServiceRequest whose Task is accepted,
//	                       in-progress or completed, owned by the provider, covers the date
//	supervisor-missing     CHW: no supervising provider (careTeam role supervisor) with a valid NPI
//	units-invalid          item: quantity missing, not a whole number, or not above 0
//	group-size-mismatch    item: CHW 98960/98961/98962 do not fit the group size given
//	dx-invalid             a diagnosis is not an ICD-10-CM code
//	dx-not-billable        a diagnosis is a header code or not effective on the date of service
//	duplicate              item: same member, code, modifiers, date and billing provider as an
//	                       accepted item (earlier, or earlier in this submission)
//
// Warnings (ClaimResponse.processNote, "warning <code>: ..."): ecm-chw-overlap, when CHW
// navigation and ECM enrollment (an ECM referral in force, or ECM billed) meet for the same
// member in the same month.
package claims
