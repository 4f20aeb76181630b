// Package bench is the load harness behind `calaimfhir bench`: it generates a synthetic CalAIM
// population from a seed (members with Coverage, screenings, consents, SDOH conditions,
// referrals of every program as ServiceRequest + Task in every status, CHW encounters and
// claims), loads it through the public FHIR API in transaction Bundles, then runs a mixed
// workload with N concurrent clients for a fixed time and reports, per operation, count,
// throughput, latency percentiles and errors.
//
// Every figure is also given as a ratio to a bare Echo handler that returns fixed bytes,
// served from this process and hit by the same HTTP client (same transport and connection
// settings), so results from different machines can be compared as ratios.
//
// The harness talks HTTP only: it never reaches into a store, so it measures what a client
// sees. Callers are the CalAIM ones: the plan loads members and referrals, EHRs (provider
// role) push referral transactions, each CBO polls and works the Tasks it owns with a token
// for its own organization, and CBOs bill claims.
package bench
