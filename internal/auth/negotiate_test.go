package auth

import "testing"

func TestNegotiateScopes(t *testing.T) {
	tests := []struct {
		name       string
		registered string
		requested  string
		want       string
	}{
		{"exact", "system/Task.rs", "system/Task.rs", "system/Task.rs"},
		{"subset of permissions", "system/Task.cruds", "system/Task.rs", "system/Task.rs"},
		{"subset of types", "system/*.rs", "system/Patient.rs", "system/Patient.rs"},
		{"wildcard request narrowed to the registered type", "system/Patient.rs", "system/*.cruds", "system/Patient.rs"},
		{"permissions narrowed", "system/Task.rs", "system/Task.cruds", "system/Task.rs"},
		{"both narrowed", "system/*.r system/Task.cu", "system/Task.cruds", "system/Task.r system/Task.cu"},
		{"v1 inside v1 stays v1", "system/*.read", "system/Patient.read", "system/Patient.read"},
		{"v1 inside v2", "system/*.cruds", "system/*.*", "system/*.*"},
		{"v1 narrowed, spelled v2", "system/*.read", "system/*.*", "system/*.rs"},
		{"v1 write against read: nothing", "system/*.read", "system/*.write", ""},
		{"other type: nothing", "system/Patient.rs", "system/Claim.rs", ""},
		{"other context: nothing", "user/*.cruds", "system/Patient.rs", ""},
		{"patient context kept", "patient/*.rs system/*.rs", "patient/Observation.rs", "patient/Observation.rs"},
		{"non-resource scopes never granted", "system/*.cruds", "openid fhirUser offline_access system/Task.r", "system/Task.r"},
		{"nothing requested", "system/*.cruds", "openid", ""},
		{"duplicates collapse", "system/*.rs system/Task.rs", "system/Task.rs system/Task.rs", "system/Task.rs"},
		{"several, in request order", "system/*.cruds", "system/Task.rs system/Patient.r", "system/Task.rs system/Patient.r"},
		{"filtered request inside unfiltered", "system/Observation.rs", "system/Observation.rs?category=survey", "system/Observation.rs?category=survey"},
		{"filtered registration, identical request", "system/Observation.rs?category=survey", "system/Observation.rs?category=survey", "system/Observation.rs?category=survey"},
		{"filtered registration, unfiltered request: nothing", "system/Observation.rs?category=survey", "system/Observation.rs", ""},
		{"filtered registration, other filter: nothing", "system/Observation.rs?category=survey", "system/Observation.rs?category=laboratory", ""},
		{"filtered request wider than registered perms: nothing", "system/Observation.r", "system/Observation.rs?category=survey", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg, err := ParseScopes(tt.registered)
			if err != nil {
				t.Fatal(err)
			}
			got, err := NegotiateScopes(tt.requested, reg)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("NegotiateScopes(%q, %q) = %q, want %q", tt.requested, tt.registered, got, tt.want)
			}
			// Whatever is granted parses, and allows nothing the registration does not.
			granted, err := ParseScopes(got)
			if err != nil {
				t.Fatalf("granted %q does not parse: %v", got, err)
			}
			for _, typ := range []string{"Patient", "Task", "Claim", "Observation", "*"} {
				for _, in := range []Interaction{Create, Read, Update, Delete, Search} {
					if Allows(granted, typ, in) && !Allows(reg, typ, in) {
						t.Errorf("granted %q allows %s on %s; registered %q does not", got, in, typ, tt.registered)
					}
				}
			}
		})
	}
	if _, err := NegotiateScopes("system/Task.zz", nil); err == nil {
		t.Error("a malformed request was accepted")
	}
}
