package storetest

import (
	"slices"
	"testing"

	"github.com/calaimfhir/calaimfhir/resources"
)

// sorted pages through q with the given page size and returns the ids in result order.
func sorted(t *testing.T, s resources.Store, q *resources.Query, pageSize int) []string {
	t.Helper()
	q.Count = pageSize
	var out []string
	for n := 0; n < 100; n++ {
		page := search(t, s, q)
		out = append(out, ids(page.Resources)...)
		if page.Next == nil {
			return out
		}
		q.After = page.Next
	}
	t.Fatal("too many pages")
	return nil
}

func init() {
	register("Search_SortByParameters_WithKeysetPaging", func(t *testing.T, h Harness) {
		s, _ := h.OpenFresh(t)
		for _, p := range []struct{ id, body string }{
			{"carla", `{"name":[{"family":"Castro"}],"birthDate":"1990-05-01","gender":"female"}`},
			{"ana", `{"name":[{"family":"Álvarez"}],"birthDate":"1980-01-01","gender":"female"}`},
			{"bob", `{"name":[{"family":"Brown"},{"family":"Zeta"}],"birthDate":"1990-05-01","gender":"male"}`},
			{"dan", `{"name":[{"family":"Díaz"}],"gender":"male"}`},
			{"eve", `{"birthDate":"1975","gender":"female"}`},
		} {
			mustPut(t, s, fromJSON(t, "Patient", p.id, 1, p.body))
		}
		cases := map[string][]string{
			"_sort=family":                  {"ana", "bob", "carla", "dan", "eve"},
			"_sort=-family":                 {"bob", "dan", "carla", "ana", "eve"}, // Zeta is bob's highest
			"_sort=birthdate":               {"eve", "ana", "carla", "bob", "dan"},
			"_sort=-birthdate":              {"carla", "bob", "ana", "eve", "dan"},
			"_sort=-birthdate,family":       {"bob", "carla", "ana", "eve", "dan"},
			"_sort=gender,-birthdate":       {"carla", "ana", "eve", "bob", "dan"},
			"_sort=gender,-_lastUpdated":    {"eve", "ana", "carla", "dan", "bob"},
			"_sort=gender&gender=male":      {"bob", "dan"},
			"_sort=family&birthdate=ge1980": {"ana", "bob", "carla"},
		}
		for q, want := range cases {
			whole := sorted(t, s, query(t, "Patient", q), 100)
			if !slices.Equal(whole, want) {
				t.Errorf("Patient?%s: got %v, want %v", q, whole, want)
				continue
			}
			for _, size := range []int{1, 2, 3} {
				if paged := sorted(t, s, query(t, "Patient", q), size); !slices.Equal(paged, want) {
					t.Errorf("Patient?%s in pages of %d: got %v, want %v", q, size, paged, want)
				}
			}
		}
	})
}
