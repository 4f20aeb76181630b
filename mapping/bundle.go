package mapping

import (
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"net/url"
	"regexp"

	"github.com/calaimfhir/calaimfhir/profiles"
)

// SourceKeySystem identifies a resource derived from an imported record by the record's own
// identity ("referral/R-1001/condition/Z59.41"): resources with no natural identifier
// (a Condition, a Consent, an Observation) are created conditionally on it, which is what
// makes a re-import store nothing new.
const SourceKeySystem = profiles.Base + "/sid/import-source-key"

// PlanIDSystem identifies Medi-Cal managed care plans by the plan id the import files carry.
const PlanIDSystem = profiles.Base + "/sid/medi-cal-plan-id"

// ModalitySystem codes how a CHW or ECM contact took place (FACE, VIDEOCONF, PHONE).
const ModalitySystem = "http://terminology.hl7.org/CodeSystem/v3-ParticipationMode"

// Entry is one transaction entry: a conditional create (POST with ifNoneExist).
type Entry struct {
	FullURL     string
	Type        string
	Resource    map[string]any
	IfNoneExist string
}

// Bundle collects the entries of one or more rows. Entries are keyed by fullUrl, which is a
// name-based UUID of the resource's identity (type + identifier), so the same Patient or
// Organization met in several rows is one entry: the first row's version wins.
type Bundle struct {
	Entries   []*Entry
	byURL     map[string]*Entry
	referOnly map[string]bool
}

// NewBundle returns an empty Bundle.
func NewBundle() *Bundle { return &Bundle{byURL: map[string]*Entry{}} }

// add appends a conditional create for a resource identified by (system, value) and returns
// its fullUrl, to be used in references. A second resource with the same identity is dropped.
func (b *Bundle) add(typ, system, value string, res map[string]any) string {
	if b.referOnly[typ] {
		return typ + "?" + url.Values{"identifier": {system + "|" + value}}.Encode()
	}
	fullURL := uuidURL(typ + "|" + system + "|" + value)
	if _, ok := b.byURL[fullURL]; ok {
		return fullURL
	}
	res["resourceType"] = typ
	for k, v := range res {
		if v == nil {
			delete(res, k) // optional elements left unset; JSON null is not FHIR
		} else if l, ok := v.([]any); ok && len(l) == 0 {
			delete(res, k)
		}
	}
	q := url.Values{"identifier": {system + "|" + value}}
	e := &Entry{FullURL: fullURL, Type: typ, Resource: res, IfNoneExist: q.Encode()}
	b.byURL[fullURL] = e
	b.Entries = append(b.Entries, e)
	return fullURL
}

// Merge appends other's entries that b does not hold yet.
func (b *Bundle) Merge(other *Bundle) {
	for _, e := range other.Entries {
		if _, ok := b.byURL[e.FullURL]; !ok {
			b.byURL[e.FullURL] = e
			b.Entries = append(b.Entries, e)
		}
	}
}

// Has reports whether the Bundle holds an entry with this fullUrl.
func (b *Bundle) Has(fullURL string) bool { _, ok := b.byURL[fullURL]; return ok }

// Len is the number of entries.
func (b *Bundle) Len() int { return len(b.Entries) }

// Transaction renders the entries as a FHIR transaction Bundle.
func (b *Bundle) Transaction() []byte {
	type request struct {
		Method      string `json:"method"`
		URL         string `json:"url"`
		IfNoneExist string `json:"ifNoneExist,omitempty"`
	}
	type entry struct {
		FullURL  string         `json:"fullUrl"`
		Resource map[string]any `json:"resource"`
		Request  request        `json:"request"`
	}
	out := struct {
		ResourceType string  `json:"resourceType"`
		Type         string  `json:"type"`
		Entry        []entry `json:"entry"`
	}{ResourceType: "Bundle", Type: "transaction"}
	for _, e := range b.Entries {
		out.Entry = append(out.Entry, entry{e.FullURL, e.Resource, request{"POST", e.Type, e.IfNoneExist}})
	}
	body, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		panic(err) // maps of strings, numbers and booleans always marshal
	}
	// A conditional reference to a resource this Bundle creates (a screening row naming its
	// member by CIN after a row that carries the member's demographics) points at its entry
	// instead: the server resolves conditional references before the transaction writes.
	created := make(map[string]string, len(b.Entries))
	for _, e := range b.Entries {
		created[e.Type+"?"+e.IfNoneExist] = e.FullURL
	}
	return conditionalRef.ReplaceAllFunc(body, func(m []byte) []byte {
		sub := conditionalRef.FindSubmatch(m)
		if full, ok := created[string(sub[1])]; ok {
			return []byte(`"reference": "` + full + `"`)
		}
		return m
	})
}

// conditionalRef matches a conditional reference as Transaction writes it (the query is
// URL-encoded, so it holds no quote or backslash).
var conditionalRef = regexp.MustCompile(`"reference": "([A-Z][A-Za-z]+\?[^"\\]*)"`)

// uuidURL is a name-based (version 5 style, SHA-1) UUID as a urn:uuid: URL.
func uuidURL(name string) string {
	sum := sha1.Sum([]byte("calaimfhir-import|" + name))
	u := sum[:16]
	u[6] = (u[6] & 0x0f) | 0x50
	u[8] = (u[8] & 0x3f) | 0x80
	h := hex.EncodeToString(u)
	return "urn:uuid:" + h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// ValidNPI reports whether s is a 10-digit NPI with a correct check digit: the Luhn check
// over the prefix 80840 and the NPI's digits.
func ValidNPI(s string) bool {
	if len(s) != 10 {
		return false
	}
	digits := "80840" + s
	sum := 0
	for i := len(digits) - 1; i >= 0; i-- {
		c := digits[i]
		if c < '0' || c > '9' {
			return false
		}
		d := int(c - '0')
		if (len(digits)-1-i)%2 == 1 {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return sum%10 == 0
}

var cinPattern = regexp.MustCompile(`^[0-9]{8}[A-Z]$`)

// ValidCIN reports whether s has the form of a Medi-Cal CIN: 8 digits then a capital letter.
func ValidCIN(s string) bool { return cinPattern.MatchString(s) }

// Small builders for the JSON shapes FHIR repeats.

func coding(system, code, display string) map[string]any {
	c := map[string]any{"system": system, "code": code}
	if display != "" {
		c["display"] = display
	}
	return c
}

func concept(codings ...map[string]any) map[string]any {
	list := make([]any, len(codings))
	for i, c := range codings {
		list[i] = c
	}
	return map[string]any{"coding": list}
}

func ref(fullURL string) map[string]any { return map[string]any{"reference": fullURL} }

func ident(system, value string) []any {
	return []any{map[string]any{"system": system, "value": value}}
}

func meta(profile string) map[string]any {
	return map[string]any{"profile": []any{profile}}
}

func list[T any](items ...T) []any {
	out := make([]any, len(items))
	for i, it := range items {
		out[i] = it
	}
	return out
}

func jsonInt(s string) json.Number { return json.Number(s) }

func jsonScalar(v any) string {
	switch x := v.(type) {
	case json.Number:
		return x.String()
	case string:
		return x
	}
	b, _ := json.Marshal(v)
	return string(b)
}
