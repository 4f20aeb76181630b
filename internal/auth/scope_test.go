package auth

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const (
	rs  = PermRead | PermSearch
	cud = PermCreate | PermUpdate | PermDelete
)

func TestParseScopesAcceptsSMARTv1AndV2ResourceScopes(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []Scope
	}{
		{"v2 read and search on one type", "system/Task.rs",
			[]Scope{{Context: "system", ResourceType: "Task", Permissions: rs, Raw: "system/Task.rs"}}},
		{"v2 all letters on every type", "system/*.cruds",
			[]Scope{{Context: "system", ResourceType: "*", Permissions: PermAll, Raw: "system/*.cruds"}}},
		{"v2 single letter in user context", "user/Patient.r",
			[]Scope{{Context: "user", ResourceType: "Patient", Permissions: PermRead, Raw: "user/Patient.r"}}},
		{"v2 letters in any order", "patient/Task.sr",
			[]Scope{{Context: "patient", ResourceType: "Task", Permissions: rs, Raw: "patient/Task.sr"}}},
		{"v1 read is read and search", "patient/*.read",
			[]Scope{{Context: "patient", ResourceType: "*", Permissions: rs, Raw: "patient/*.read"}}},
		{"v1 write is create update delete", "user/Observation.write",
			[]Scope{{Context: "user", ResourceType: "Observation", Permissions: cud, Raw: "user/Observation.write"}}},
		{"v1 star is everything", "system/*.*",
			[]Scope{{Context: "system", ResourceType: "*", Permissions: PermAll, Raw: "system/*.*"}}},
		{"v2 query is kept", "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory",
			[]Scope{{Context: "patient", ResourceType: "Observation", Permissions: rs,
				Query: url.Values{"category": {"http://terminology.hl7.org/CodeSystem/observation-category|laboratory"}},
				Raw:   "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory"}}},
		{"non-resource scopes are ignored", "openid fhirUser launch/patient launch offline_access online_access api://x/.default", nil},
		{"empty string", "", nil},
		{"mixed, extra spaces", "  openid system/Task.rs\tuser/Patient.r  offline_access ",
			[]Scope{
				{Context: "system", ResourceType: "Task", Permissions: rs, Raw: "system/Task.rs"},
				{Context: "user", ResourceType: "Patient", Permissions: PermRead, Raw: "user/Patient.r"},
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseScopes(tt.in)
			if err != nil {
				t.Fatalf("ParseScopes(%q): %v", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseScopes(%q) (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestParseScopesRejectsMalformedResourceScopes(t *testing.T) {
	for _, in := range []string{
		"system/Task",                        // no permissions
		"system/Task.",                       // empty permissions
		"system/task.rs",                     // lower-case type
		"system/.rs",                         // empty type
		"system/Task.x",                      // unknown letter
		"system/Task.rr",                     // repeated letter
		"system/Task.readwrite",              // not a v1 word
		"system/Task.rs?",                    // empty filter
		"system/Task.rs?a=%zz",               // bad escape in filter
		"user/Ta-sk.rs",                      // not a type name
		"openid system/Task.rs user/Patient", // one bad among good ones
	} {
		t.Run(in, func(t *testing.T) {
			got, err := ParseScopes(in)
			if err == nil {
				t.Fatalf("ParseScopes(%q) = %v, want an error", in, got)
			}
		})
	}
}

func TestAllowsGrantsWhatScopesSay(t *testing.T) {
	tests := []struct {
		name   string
		scopes string
		typ    string
		in     Interaction
		want   bool
	}{
		{"v2 rs allows read", "system/Task.rs", "Task", Read, true},
		{"v2 rs allows search", "system/Task.rs", "Task", Search, true},
		{"v2 rs denies create", "system/Task.rs", "Task", Create, false},
		{"v2 rs denies update", "system/Task.rs", "Task", Update, false},
		{"v2 rs denies delete", "system/Task.rs", "Task", Delete, false},
		{"v2 rs denies another type", "system/Task.rs", "Patient", Read, false},
		{"v2 cruds on star allows delete", "system/*.cruds", "ServiceRequest", Delete, true},
		{"v2 letters split across scopes: read", "system/Task.r system/Task.s", "Task", Read, true},
		{"v2 letters split across scopes: search", "system/Task.r system/Task.s", "Task", Search, true},
		{"v2 c alone", "user/Task.c", "Task", Create, true},
		{"v2 c alone denies read", "user/Task.c", "Task", Read, false},
		{"v2 u covers update and patch", "user/Task.u", "Task", Update, true},
		{"v1 read allows read", "patient/*.read", "Observation", Read, true},
		{"v1 read allows search", "patient/*.read", "Observation", Search, true},
		{"v1 read denies create", "patient/*.read", "Observation", Create, false},
		{"v1 read denies update", "patient/*.read", "Observation", Update, false},
		{"v1 write allows create", "user/Observation.write", "Observation", Create, true},
		{"v1 write allows update", "user/Observation.write", "Observation", Update, true},
		{"v1 write allows delete", "user/Observation.write", "Observation", Delete, true},
		{"v1 write denies read", "user/Observation.write", "Observation", Read, false},
		{"v1 write denies search", "user/Observation.write", "Observation", Search, false},
		{"v1 star allows create", "system/*.*", "Consent", Create, true},
		{"v1 star allows search", "system/*.*", "Consent", Search, true},
		{"all contexts grant: patient", "patient/Task.c", "Task", Create, true},
		{"all contexts grant: user", "user/Task.c", "Task", Create, true},
		{"all contexts grant: system", "system/Task.c", "Task", Create, true},
		{"filtered scope grants nothing", "patient/Observation.rs?category=laboratory", "Observation", Read, false},
		{"filtered scope beside an unfiltered one", "patient/Observation.rs?category=laboratory patient/Patient.r", "Patient", Read, true},
		{"star type asked needs a wildcard scope", "system/Task.rs", "*", Search, false},
		{"star type asked with a wildcard scope", "system/*.s", "*", Search, true},
		{"no resource scopes", "openid fhirUser", "Task", Read, false},
		{"empty interaction is never allowed", "system/*.*", "Task", "", false},
		{"unknown interaction is never allowed", "system/*.*", "Task", "operation", false},
		{"interaction names are case-sensitive", "system/*.*", "Task", "READ", false},
		{"empty resource type is never allowed", "system/*.*", "", Read, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			scopes, err := ParseScopes(tt.scopes)
			if err != nil {
				t.Fatal(err)
			}
			if got := Allows(scopes, tt.typ, tt.in); got != tt.want {
				t.Errorf("Allows(%q, %q, %q) = %v, want %v", tt.scopes, tt.typ, tt.in, got, tt.want)
			}
			if len(scopes) == 1 {
				if got := scopes[0].Grants(tt.typ, tt.in); got != tt.want {
					t.Errorf("Grants(%q, %q, %q) = %v, want %v", tt.scopes, tt.typ, tt.in, got, tt.want)
				}
			}
			c := &Caller{Scopes: scopes}
			if got := c.Allows(tt.typ, tt.in); got != tt.want {
				t.Errorf("Caller.Allows = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestInteractionsAreTheServiceHookStrings(t *testing.T) {
	// resources.Service.Authorize passes these strings; they must convert to the constants.
	for s, want := range map[string]Interaction{
		"create": Create, "read": Read, "update": Update, "delete": Delete, "search": Search,
	} {
		if Interaction(s) != want {
			t.Errorf("Interaction(%q) != %v", s, want)
		}
		if !PermAll.Has(Interaction(s)) {
			t.Errorf("PermAll lacks %q", s)
		}
	}
}

func TestPermissionsStringSpellsLetters(t *testing.T) {
	for p, want := range map[Permissions]string{
		0: "none", PermRead: "r", rs: "rs", cud: "cud", PermAll: "cruds",
	} {
		if got := p.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", p, got, want)
		}
	}
}

func TestCallerTravelsInContext(t *testing.T) {
	ctx := context.Background()
	if c, ok := CallerFrom(ctx); ok || c != nil {
		t.Fatalf("CallerFrom(empty) = %v, %v", c, ok)
	}
	if _, ok := CallerFrom(WithCaller(ctx, nil)); ok {
		t.Error("CallerFrom reports a nil caller as present")
	}
	want := &Caller{Subject: "s", Org: "Organization/plan-a", Role: RolePlan}
	got, ok := CallerFrom(WithCaller(ctx, want))
	if !ok || got != want {
		t.Fatalf("CallerFrom = %v, %v; want %v", got, ok, want)
	}
	if got.OrgID() != "plan-a" {
		t.Errorf("OrgID = %q", got.OrgID())
	}
	var nilCaller *Caller
	if nilCaller.Allows("Task", Read) || nilCaller.OrgID() != "" {
		t.Error("a nil caller is allowed something")
	}
}

func TestOrgReferenceShape(t *testing.T) {
	for ref, want := range map[string]bool{
		"Organization/plan-a":                     true,
		"Organization/A.b-9":                      true,
		"Organization/" + strings.Repeat("x", 64): true,
		"Organization/" + strings.Repeat("x", 65): false,
		"Organization/":                           false,
		"Organization/a/b":                        false,
		"Organization/a b":                        false,
		"Patient/1":                               false,
		"plan-a":                                  false,
		"https://x/Organization/1":                false,
	} {
		if _, got := orgID(ref); got != want {
			t.Errorf("orgID(%q) ok = %v, want %v", ref, got, want)
		}
	}
}
