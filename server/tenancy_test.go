package server_test

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/calaimfhir/calaimfhir/internal/auth"
	"github.com/calaimfhir/calaimfhir/internal/fhirtest"
	"github.com/calaimfhir/calaimfhir/internal/storetest"
	"github.com/calaimfhir/calaimfhir/resources"
)

// tenancyWorld stores two referrals: A (member ana of plan-1, referred by prov-1 to cbo-a,
// with ana's Consent naming cbo-a and a Claim billed by cbo-a) and B (member ben of plan-2,
// referred by prov-2 to cbo-b). Everything is written by the administrator, so no tenant
// tags are involved: what each caller sees follows from the references alone.
func tenancyWorld(t *testing.T, s *fhirtest.Server) {
	t.Helper()
	put := func(typ, id, body string) {
		t.Helper()
		r := s.Do("PUT", "/fhir/"+typ+"/"+id, []byte(fmt.Sprintf(`{"resourceType":%q,"id":%q,%s}`, typ, id, body)))
		if r.Status != http.StatusCreated && r.Status != http.StatusOK {
			t.Fatalf("PUT %s/%s: %d %s", typ, id, r.Status, r.Body)
		}
	}
	for _, org := range []string{"plan-1", "plan-2", "cbo-a", "cbo-b", "prov-1", "prov-2"} {
		put("Organization", org, `"name":"`+org+`"`)
	}
	for _, side := range []struct{ p, plan, prov, cbo, x string }{{"ana", "plan-1", "prov-1", "cbo-a", "a"}, {"ben", "plan-2", "prov-2", "cbo-b", "b"}} {
		put("Patient", side.p, `"name":[{"family":"`+side.p+`"}]`)
		put("Coverage", "cov-"+side.x, `"status":"active","beneficiary":{"reference":"Patient/`+side.p+`"},"payor":[{"reference":"Organization/`+side.plan+`"}]`)
		put("ServiceRequest", "sr-"+side.x, `"status":"active","intent":"order","subject":{"reference":"Patient/`+side.p+`"},"requester":{"reference":"Organization/`+side.prov+`"},"performer":[{"reference":"Organization/`+side.cbo+`"}]`)
		put("Task", "task-"+side.x, `"status":"requested","intent":"order","focus":{"reference":"ServiceRequest/sr-`+side.x+`"},"for":{"reference":"Patient/`+side.p+`"},"requester":{"reference":"Organization/`+side.prov+`"},"owner":{"reference":"Organization/`+side.cbo+`"}`)
		put("Consent", "con-"+side.x, consentBody(side.p, side.cbo, "active", "", ""))
		put("Claim", "claim-"+side.x, claimBody(side.p, side.cbo, "cov-"+side.x))
	}
}

func consentBody(patient, org, status, end, labels string) string {
	period := ""
	if end != "" {
		period = `,"period":{"end":"` + end + `"}`
	}
	return `"status":"` + status + `","scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"patient-privacy"}]},` +
		`"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"IDSCL"}]}],"patient":{"reference":"Patient/` + patient + `"},` +
		`"provision":{"type":"permit","actor":[{"role":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ParticipationType","code":"IRCP"}]},"reference":{"reference":"Organization/` + org + `"}}]` + period + labels + `}`
}

func claimBody(patient, provider, coverage string) string {
	return `"status":"active","type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/claim-type","code":"professional"}]},"use":"claim",` +
		`"patient":{"reference":"Patient/` + patient + `"},"created":"2025-04-01","provider":{"reference":"Organization/` + provider + `"},"priority":{"coding":[{"code":"normal"}]},` +
		`"insurance":[{"sequence":1,"focal":true,"coverage":{"reference":"Coverage/` + coverage + `"}}]`
}

// newBody is a fresh resource of typ on referral A, as a client would create it.
func newBody(typ, tags string) string {
	var body string
	switch typ {
	case "Patient":
		body = `"name":[{"family":"new"}]`
	case "ServiceRequest":
		body = `"status":"active","intent":"order","subject":{"reference":"Patient/ana"},"requester":{"reference":"Organization/prov-1"}`
	case "Task":
		body = `"status":"requested","intent":"order","focus":{"reference":"ServiceRequest/sr-a"},"for":{"reference":"Patient/ana"},"requester":{"reference":"Organization/prov-1"},"owner":{"reference":"Organization/cbo-a"}`
	case "Consent":
		body = consentBody("ana", "cbo-a", "active", "", "")
	case "Claim":
		body = claimBody("ana", "cbo-a", "cov-a")
	}
	if tags != "" {
		body += `,"meta":{"tag":[` + tags + `]}`
	}
	return `{"resourceType":"` + typ + `",` + body + `}`
}

// expiredToken signs, with the server's own key, a token that expired an hour ago.
func expiredToken(t *testing.T, s *fhirtest.Server) string {
	t.Helper()
	raw, err := os.ReadFile(s.Key.Path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(raw)
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	past := time.Now().Add(-2 * time.Hour)
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{"iss": auth.DevIssuer, "aud": auth.DevAudience, "sub": "x",
		"org": "Organization/plan-1", "role": "admin", "scope": "system/*.cruds", "iat": past.Unix(), "nbf": past.Unix(), "exp": past.Add(time.Hour).Unix()})
	tok.Header["kid"] = s.Key.Kid
	signed, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return signed
}

// TestTenancy_AuthorizationMatrix asserts the exact status of every interaction on every
// referral type for every kind of caller, on both stores.
func TestTenancy_AuthorizationMatrix(t *testing.T) {
	fhirtest.ForEachStore(t, func(t *testing.T, h storetest.Harness) {
		store, _ := h.OpenFresh(t)
		s := fhirtest.Start(t, store, fhirtest.Options{})
		tenancyWorld(t, s)

		otherKey, _ := auth.LoadOrCreateDevKey(t.TempDir())
		wrongKey, _ := otherKey.Mint(auth.MintOptions{Role: "admin", Org: "Organization/plan-1"})
		wrongAud, _ := s.Key.Mint(auth.MintOptions{Role: "admin", Org: "Organization/plan-1", Audience: "someone-else"})
		header := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT","kid":"` + s.Key.Kid + `"}`))
		claims := base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"calaimfhir-dev","aud":"calaimfhir","sub":"x","org":"Organization/plan-1","role":"admin","scope":"system/*.cruds","exp":` +
			strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10) + `}`))

		callers := []struct{ name, token string }{
			{"admin", s.AdminToken},
			{"plan", s.Token("plan", "Organization/plan-1", "")},
			{"cboA", s.Token("cbo", "Organization/cbo-a", "")},
			{"cboB", s.Token("cbo", "Organization/cbo-b", "")},
			{"provider", s.Token("provider", "Organization/prov-1", "")},
			{"none", ""},
			{"expired", expiredToken(t, s)},
			{"wrongAud", wrongAud},
			{"wrongKey", wrongKey},
			{"algNone", header + "." + claims + "."},
		}
		types := []string{"Patient", "ServiceRequest", "Task", "Consent", "Claim"}
		target := map[string]string{"Patient": "ana", "ServiceRequest": "sr-a", "Task": "task-a", "Consent": "con-a", "Claim": "claim-a"}
		// Expected status per caller and interaction, in the order of types.
		type row = [5]int
		want := map[string]map[string]row{
			"admin":    {"read": {200, 200, 200, 200, 200}, "search": {1, 1, 1, 1, 1}, "create": {201, 201, 201, 201, 201}, "update": {200, 200, 200, 200, 200}, "delete": {204, 204, 204, 204, 204}, "history": {200, 200, 200, 200, 200}, "transaction": {200, 200, 200, 200, 200}},
			"plan":     {"read": {200, 200, 200, 200, 200}, "search": {1, 1, 1, 1, 1}, "create": {201, 201, 403, 201, 201}, "update": {200, 200, 200, 200, 200}, "delete": {204, 204, 204, 204, 204}, "history": {200, 200, 200, 200, 200}, "transaction": {200, 200, 403, 200, 200}},
			"cboA":     {"read": {200, 200, 200, 200, 200}, "search": {1, 1, 1, 1, 1}, "create": {403, 403, 403, 403, 201}, "update": {403, 403, 200, 403, 200}, "delete": {403, 403, 403, 403, 204}, "history": {200, 200, 200, 200, 200}, "transaction": {403, 403, 403, 403, 200}},
			"cboB":     {"read": {404, 404, 404, 404, 404}, "search": {0, 0, 0, 0, 0}, "create": {403, 403, 403, 403, 422}, "update": {404, 404, 404, 404, 404}, "delete": {404, 404, 404, 404, 404}, "history": {404, 404, 404, 404, 404}, "transaction": {403, 403, 403, 403, 422}},
			"provider": {"read": {200, 200, 200, 200, 200}, "search": {1, 1, 1, 1, 1}, "create": {201, 201, 201, 201, 201}, "update": {200, 200, 200, 200, 200}, "delete": {204, 204, 204, 204, 204}, "history": {200, 200, 200, 200, 200}, "transaction": {200, 200, 200, 200, 200}},
		}
		interactions := []string{"read", "search", "create", "update", "delete", "history", "transaction"}
		// Each delete removes a disposable copy of the target, tagged for every organization
		// of referral A (administrators may set tenant tags), so the fixture stays whole.
		tagsA := `{"system":"` + resources.TenantTagSystem + `","code":"Organization/plan-1"},{"system":"` + resources.TenantTagSystem + `","code":"Organization/cbo-a"},{"system":"` + resources.TenantTagSystem + `","code":"Organization/prov-1"}`

		for _, c := range callers {
			for _, in := range interactions {
				for i, typ := range types {
					auth := []string{"Authorization", "Bearer " + c.token}
					if c.token == "" {
						auth = []string{"Authorization", ""}
					}
					id := target[typ]
					var r *fhirtest.Response
					switch in {
					case "read":
						r = s.Do("GET", "/fhir/"+typ+"/"+id, nil, auth...)
					case "search":
						r = s.Do("GET", "/fhir/"+typ+"?_id="+id+"&_total=accurate", nil, auth...)
					case "history":
						r = s.Do("GET", "/fhir/"+typ+"/"+id+"/_history", nil, auth...)
					case "create":
						r = s.Do("POST", "/fhir/"+typ, []byte(newBody(typ, "")), auth...)
					case "update":
						cur := s.Do("GET", "/fhir/"+typ+"/"+id, nil)
						r = s.Do("PUT", "/fhir/"+typ+"/"+id, cur.Body, auth...)
					case "delete":
						made := s.Do("POST", "/fhir/"+typ, []byte(newBody(typ, tagsA)))
						wantStatus(t, made, http.StatusCreated)
						r = s.Do("DELETE", "/fhir/"+typ+"/"+made.JSON(t)["id"].(string), nil, auth...)
					case "transaction":
						bundle := `{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:1b4e28ba-2fa1-11d2-883f-0016d3cca427","resource":` + newBody(typ, "") + `,"request":{"method":"POST","url":"` + typ + `"}}]}`
						r = s.Do("POST", "/fhir", []byte(bundle), auth...)
					}
					expect, known := want[c.name]
					if !known { // a token that must not authenticate
						if r.Status != http.StatusUnauthorized || r.Header.Get("WWW-Authenticate") == "" {
							t.Errorf("%s %s %s: %d, want 401 with WWW-Authenticate: %s", c.name, in, typ, r.Status, r.Body)
						}
						continue
					}
					w := expect[in][i]
					if in == "search" {
						if r.Status != http.StatusOK {
							t.Errorf("%s search %s: %d: %s", c.name, typ, r.Status, r.Body)
							continue
						}
						b := r.JSON(t)
						entries, _ := b["entry"].([]any)
						if total := jsonInt(b["total"]); total != w || len(entries) != w {
							t.Errorf("%s search %s: total %v, %d entries; want %d", c.name, typ, b["total"], len(entries), w)
						}
						continue
					}
					if r.Status != w {
						t.Errorf("%s %s %s: %d, want %d: %s", c.name, in, typ, r.Status, w, r.Body)
					}
				}
			}
		}
	})
}

// TestTenancy_NoLeaks checks that a CBO never learns of another CBO's referral: not in
// entries, totals, _include, _revinclude, _has, chains, history or system search.
func TestTenancy_NoLeaks(t *testing.T) {
	fhirtest.ForEachStore(t, func(t *testing.T, h storetest.Harness) {
		store, _ := h.OpenFresh(t)
		s := fhirtest.Start(t, store, fhirtest.Options{})
		tenancyWorld(t, s)
		cboB := s.Token("cbo", "Organization/cbo-b", "")
		cases := []struct {
			query string
			want  []string // every resource id in the Bundle, matches and includes
			total int      // -1: not asserted
		}{
			{"Task?_total=accurate", []string{"task-b"}, 1},
			{"Task?owner=Organization/cbo-a&_total=accurate", nil, 0},
			{"Task?_include=Task:focus&_include=Task:patient", []string{"task-b", "sr-b", "ben"}, -1},
			{"Patient?_revinclude=Task:patient&_total=accurate", []string{"ben", "task-b"}, 1},
			{"Patient?_has:Task:patient:owner=Organization/cbo-a", nil, 0},
			{"Patient?_has:Task:patient:status=requested", []string{"ben"}, -1},
			{"Task?patient.name=ana", nil, 0},
			{"Task?focus:ServiceRequest.requester=Organization/prov-1", nil, 0},
			{"ServiceRequest?_revinclude=Task:focus&_revinclude=Claim:patient", []string{"sr-b", "task-b"}, -1},
			{"Claim?_total=accurate", []string{"claim-b"}, 1},
			{"Consent?_total=accurate", []string{"con-b"}, 1},
			{"Coverage?_total=accurate", []string{"cov-b"}, 1},
			{"?_type=Task,Patient,Claim&_total=accurate", []string{"task-b", "ben", "claim-b"}, 3},
		}
		for _, tc := range cases {
			r := s.Do("GET", "/fhir/"+tc.query, nil, "Authorization", "Bearer "+cboB)
			wantStatus(t, r, http.StatusOK)
			b := r.JSON(t)
			var got []string
			entries, _ := b["entry"].([]any)
			for _, e := range entries {
				res, _ := e.(map[string]any)["resource"].(map[string]any)
				if res["resourceType"] != "OperationOutcome" {
					got = append(got, res["id"].(string))
				}
			}
			slices.Sort(got)
			want := slices.Clone(tc.want)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("%s: got %v, want %v", tc.query, got, want)
			}
			if tc.total >= 0 && jsonInt(b["total"]) != tc.total {
				t.Errorf("%s: total %v, want %d", tc.query, b["total"], tc.total)
			}
			if inEntries, _ := json.Marshal(entries); strings.Contains(string(inEntries), "Patient/ana") || strings.Contains(string(inEntries), "Organization/cbo-a") {
				t.Errorf("%s: the Bundle's entries mention referral A: %s", tc.query, inEntries)
			}
		}
		// Type history shows only B's versions.
		r := s.Do("GET", "/fhir/Task/_history", nil, "Authorization", "Bearer "+cboB)
		wantStatus(t, r, http.StatusOK)
		if strings.Contains(string(r.Body), "task-a") {
			t.Errorf("Task history leaks task-a: %s", r.Body)
		}
		// A conditional create does not match (and so does not reveal) A's patient.
		made := s.Do("POST", "/fhir/Claim", []byte(`{"resourceType":"Claim",`+claimBody("ben", "cbo-b", "cov-b")+`}`),
			"Authorization", "Bearer "+cboB, "If-None-Exist", "_id=claim-a")
		wantStatus(t, made, http.StatusCreated)
		// Writes cannot probe ids: a reference to A's patient is as missing as an unknown one.
		for _, ref := range []string{"Patient/ana", "Patient/nobody"} {
			claim := `{"resourceType":"Claim",` + strings.Replace(claimBody("ana", "cbo-b", "cov-b"), "Patient/ana", ref, 1) + `}`
			r := s.Do("POST", "/fhir/Claim", []byte(claim), "Authorization", "Bearer "+cboB)
			wantStatus(t, r, http.StatusUnprocessableEntity)
		}
	})
}

// TestTenancy_TenantTag checks that writers are recorded in meta.tag, that clients cannot set
// or remove the tag, and that what an organization wrote stays visible to it.
func TestTenancy_TenantTag(t *testing.T) {
	store, _ := fhirtest.SQLite.OpenFresh(t)
	s := fhirtest.Start(t, store, fhirtest.Options{})
	tenancyWorld(t, s)
	cboA := s.Token("cbo", "Organization/cbo-a", "")
	cboB := s.Token("cbo", "Organization/cbo-b", "")
	forged := `{"system":"` + resources.TenantTagSystem + `","code":"Organization/cbo-b"}`
	planted := `{"system":"https://calaimfhir.org/fhir/sid/claim-line","code":"planted"}`
	body := `{"resourceType":"Procedure","status":"completed","subject":{"reference":"Patient/ana"},"code":{"text":"housing navigation"},"meta":{"tag":[` + forged + `,` + planted + `,{"system":"urn:other","code":"keep"}]}}`
	r := s.Do("POST", "/fhir/Procedure", []byte(body), "Authorization", "Bearer "+cboA)
	wantStatus(t, r, http.StatusCreated)
	proc := r.JSON(t)
	id := proc["id"].(string)
	tags, _ := json.Marshal(proc["meta"].(map[string]any)["tag"])
	if !strings.Contains(string(tags), "Organization/cbo-a") || strings.Contains(string(tags), "Organization/cbo-b") || strings.Contains(string(tags), "planted") || !strings.Contains(string(tags), "keep") {
		t.Fatalf("tags %s: want cbo-a's tenant tag, not the forged tenant tag nor the planted server tag, and the other tag kept", tags)
	}
	wantStatus(t, s.Do("GET", "/fhir/Procedure/"+id, nil, "Authorization", "Bearer "+cboA), http.StatusOK)
	wantStatus(t, s.Do("GET", "/fhir/Procedure/"+id, nil, "Authorization", "Bearer "+cboB), http.StatusNotFound)
	// An update that drops the tag keeps it.
	noTag := `{"resourceType":"Procedure","id":"` + id + `","status":"completed","subject":{"reference":"Patient/ana"},"code":{"text":"housing navigation, 2 visits"}}`
	r = s.Do("PUT", "/fhir/Procedure/"+id, []byte(noTag), "Authorization", "Bearer "+cboA)
	wantStatus(t, r, http.StatusOK)
	if !strings.Contains(string(r.Body), "Organization/cbo-a") {
		t.Fatalf("the update lost the tenant tag: %s", r.Body)
	}
	// A CBO changing anything but the workflow fields of a Task it owns: 403.
	cur := s.Do("GET", "/fhir/Task/task-a", nil).JSON(t)
	cur["priority"] = "urgent"
	changed, _ := json.Marshal(cur)
	wantOutcome(t, s.Do("PUT", "/fhir/Task/task-a", changed, "Authorization", "Bearer "+cboA), http.StatusForbidden, "")
}

// TestTenancy_ConsentDisclosure covers grant, sensitive labels, expiry and revocation.
func TestTenancy_ConsentDisclosure(t *testing.T) {
	fhirtest.ForEachStore(t, func(t *testing.T, h storetest.Harness) {
		store, _ := h.OpenFresh(t)
		s := fhirtest.Start(t, store, fhirtest.Options{})
		tenancyWorld(t, s)
		cboA := s.Token("cbo", "Organization/cbo-a", "")
		put := func(typ, id, body string) {
			t.Helper()
			r := s.Do("PUT", "/fhir/"+typ+"/"+id, []byte(fmt.Sprintf(`{"resourceType":%q,"id":%q,%s}`, typ, id, body)))
			if r.Status >= 300 {
				t.Fatalf("PUT %s/%s: %d %s", typ, id, r.Status, r.Body)
			}
		}
		eth := `"meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"ETH"}]},`
		put("Observation", "obs-plain", `"status":"final","code":{"text":"food insecurity screening"},"subject":{"reference":"Patient/ana"}`)
		put("Observation", "obs-eth", eth+`"status":"final","code":{"text":"alcohol use"},"subject":{"reference":"Patient/ana"}`)
		put("Condition", "cond-eth", eth+`"code":{"text":"alcohol use disorder"},"subject":{"reference":"Patient/ana"}`)
		put("Observation", "obs-ben", `"status":"final","code":{"text":"x"},"subject":{"reference":"Patient/ben"}`)

		look := func(step string, want []string, withheld bool) {
			t.Helper()
			r := s.Do("GET", "/fhir/Observation?patient=Patient/ana&_total=accurate", nil, "Authorization", "Bearer "+cboA)
			wantStatus(t, r, http.StatusOK)
			b := r.JSON(t)
			var got []string
			sawOutcome := false
			entries, _ := b["entry"].([]any)
			for _, e := range entries {
				res := e.(map[string]any)["resource"].(map[string]any)
				if res["resourceType"] == "OperationOutcome" {
					sawOutcome = strings.Contains(string(r.Body), "withheld")
					continue
				}
				got = append(got, res["id"].(string))
			}
			slices.Sort(got)
			if !slices.Equal(got, want) || jsonInt(b["total"]) != len(want) {
				t.Errorf("%s: got %v (total %v), want %v", step, got, b["total"], want)
			}
			if sawOutcome != withheld {
				t.Errorf("%s: withheld notice %v, want %v: %s", step, sawOutcome, withheld, r.Body)
			}
			if strings.Contains(string(r.Body), "alcohol") && !slices.Contains(want, "obs-eth") {
				t.Errorf("%s: the withheld notice reveals what was withheld: %s", step, r.Body)
			}
			for _, id := range []string{"obs-plain", "obs-eth"} {
				wantRead := http.StatusNotFound
				if slices.Contains(want, id) {
					wantRead = http.StatusOK
				}
				if r := s.Do("GET", "/fhir/Observation/"+id, nil, "Authorization", "Bearer "+cboA); r.Status != wantRead {
					t.Errorf("%s: read %s: %d, want %d", step, id, r.Status, wantRead)
				}
			}
		}
		look("active consent, no labels", []string{"obs-plain"}, true)
		nested := `,"provision":[{"type":"permit","securityLabel":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"ETH"}]}]`
		put("Consent", "con-a", consentBody("ana", "cbo-a", "active", "", nested))
		look("consent covers ETH", []string{"obs-eth", "obs-plain"}, false)
		// _include of a gated type follows the same rule.
		r := s.Do("GET", "/fhir/Patient?_id=ana&_revinclude=Condition:patient", nil, "Authorization", "Bearer "+cboA)
		if !strings.Contains(string(r.Body), "cond-eth") {
			t.Errorf("revinclude under an ETH consent lacks cond-eth: %s", r.Body)
		}
		put("Consent", "con-a", consentBody("ana", "cbo-a", "active", "2020-12-31", nested))
		look("consent expired", nil, true)
		put("Consent", "con-a", consentBody("ana", "cbo-a", "inactive", "", nested))
		look("consent revoked", nil, true)
		r = s.Do("GET", "/fhir/Patient?_id=ana&_revinclude=Condition:patient", nil, "Authorization", "Bearer "+cboA)
		if strings.Contains(string(r.Body), "cond-eth") || !strings.Contains(string(r.Body), "withheld") {
			t.Errorf("revinclude after revocation: %s", r.Body)
		}
		// ben's data never reaches cbo-a, consent or not; and a consent for another
		// organization grants cbo-a nothing.
		put("Consent", "con-a", consentBody("ana", "cbo-b", "active", "", nested))
		look("consent names another CBO", nil, true)
		if r := s.Do("GET", "/fhir/Observation/obs-ben", nil, "Authorization", "Bearer "+cboA); r.Status != http.StatusNotFound {
			t.Errorf("obs-ben: %d", r.Status)
		}
	})
}

// jsonInt reads a JSON number decoded with UseNumber (-1 when absent).
func jsonInt(v any) int {
	n, ok := v.(json.Number)
	if !ok {
		return -1
	}
	i, err := n.Int64()
	if err != nil {
		return -1
	}
	return int(i)
}

// TestTenancy_ReassignmentTakesEffectAtOnce: access sets are cached across requests, so a
// write that changes them must show on the very next request.
func TestTenancy_ReassignmentTakesEffectAtOnce(t *testing.T) {
	store, _ := fhirtest.SQLite.OpenFresh(t)
	s := fhirtest.Start(t, store, fhirtest.Options{})
	tenancyWorld(t, s)
	cboA := s.Token("cbo", "Organization/cbo-a", "")
	cboB := s.Token("cbo", "Organization/cbo-b", "")
	read := func(tok string) int {
		return s.Do("GET", "/fhir/Patient/ana", nil, "Authorization", "Bearer "+tok).Status
	}
	if read(cboA) != 200 || read(cboB) != 404 {
		t.Fatalf("before: cbo-a %d, cbo-b %d", read(cboA), read(cboB))
	}
	task := s.Do("GET", "/fhir/Task/task-a", nil).JSON(t)
	task["owner"] = map[string]any{"reference": "Organization/cbo-b"}
	body, _ := json.Marshal(task)
	wantStatus(t, s.Do("PUT", "/fhir/Task/task-a", body), http.StatusOK)
	// cbo-b gains the patient at once; cbo-a keeps her only through sr-a, which still
	// names it as performer, and loses the Task.
	if b := read(cboB); b != 200 {
		t.Fatalf("after reassignment: cbo-b reads ana: %d, want 200", b)
	}
	if r := s.Do("GET", "/fhir/Task/task-a", nil, "Authorization", "Bearer "+cboA); r.Status != 404 {
		t.Fatalf("after reassignment: cbo-a reads the Task: %d, want 404", r.Status)
	}
	// And a plan loses a member at once when the Coverage ends up with another payor.
	plan := s.Token("plan", "Organization/plan-1", "")
	if got := read(plan); got != 200 {
		t.Fatalf("plan before: %d", got)
	}
	cov := s.Do("GET", "/fhir/Coverage/cov-a", nil).JSON(t)
	cov["payor"] = []any{map[string]any{"reference": "Organization/plan-2"}}
	body, _ = json.Marshal(cov)
	wantStatus(t, s.Do("PUT", "/fhir/Coverage/cov-a", body), http.StatusOK)
	if got := read(plan); got != 404 {
		t.Fatalf("plan after the payor changed: %d, want 404", got)
	}
}

// TestTenancy_DeleteDoesNotReachOtherOrganizations: a refused delete does not name referrers
// the caller cannot see, and a cascade never deletes them.
func TestTenancy_DeleteDoesNotReachOtherOrganizations(t *testing.T) {
	store, _ := fhirtest.SQLite.OpenFresh(t)
	s := fhirtest.Start(t, store, fhirtest.Options{})
	tenancyWorld(t, s)
	// An Observation about ben (referral B) that mentions ana, written for cbo-b.
	obs := `{"resourceType":"Observation","id":"obs-x","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/ben"},"focus":[{"reference":"Patient/ana"}],` +
		`"meta":{"tag":[{"system":"` + resources.TenantTagSystem + `","code":"Organization/cbo-b"}]}}`
	wantStatus(t, s.Do("PUT", "/fhir/Observation/obs-x", []byte(obs)), http.StatusCreated)
	provider := s.Token("provider", "Organization/prov-1", "")
	r := s.Do("DELETE", "/fhir/Patient/ana", nil, "Authorization", "Bearer "+provider)
	wantOutcome(t, r, http.StatusConflict, "")
	if strings.Contains(string(r.Body), "obs-x") || !strings.Contains(string(r.Body), "other organizations") {
		t.Fatalf("refusal: %s", r.Body)
	}
	r = s.Do("DELETE", "/fhir/Patient/ana?_cascade=delete", nil, "Authorization", "Bearer "+provider)
	wantOutcome(t, r, http.StatusConflict, "")
	if strings.Contains(string(r.Body), "obs-x") {
		t.Fatalf("cascade refusal names obs-x: %s", r.Body)
	}
	for _, path := range []string{"/fhir/Patient/ana", "/fhir/Observation/obs-x", "/fhir/Task/task-a"} {
		wantStatus(t, s.Do("GET", path, nil), http.StatusOK) // nothing was deleted
	}
}

// TestTenancy_ConditionalDeleteFollowsTheDeleteRules: DELETE Type?query applies to each match
// the rules DELETE Type/id applies (it once checked visibility only).
func TestTenancy_ConditionalDeleteFollowsTheDeleteRules(t *testing.T) {
	store, _ := fhirtest.SQLite.OpenFresh(t)
	s := fhirtest.Start(t, store, fhirtest.Options{})
	tenancyWorld(t, s)
	cases := []struct {
		role, org, path string
		want            int
	}{
		{"cbo", "Organization/cbo-a", "/fhir/Task?_id=task-a", http.StatusForbidden},               // a CBO never deletes a Task
		{"provider", "Organization/prov-2", "/fhir/Organization?_id=plan-1", http.StatusForbidden}, // nor anyone another writer's directory entry
		{"cbo", "Organization/cbo-b", "/fhir/Task?_id=task-a", http.StatusNoContent},               // what it cannot see: nothing matches
	}
	for _, c := range cases {
		r := s.Do("DELETE", c.path, nil, "Authorization", "Bearer "+s.Token(c.role, c.org, ""))
		if r.Status != c.want {
			t.Errorf("%s %s DELETE %s: %d, want %d: %s", c.role, c.org, c.path, r.Status, c.want, r.Body)
		}
	}
	for _, still := range []string{"/fhir/Task/task-a", "/fhir/Organization/plan-1"} {
		wantStatus(t, s.Do("GET", still, nil), http.StatusOK)
	}
}
