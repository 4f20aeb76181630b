package server_test

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/calaimfhir/calaimfhir/internal/fhirtest"
	"github.com/calaimfhir/calaimfhir/internal/storetest"
)

// TestSearch_PagingWhileOthersWrite: a CBO polls its Tasks in pages sorted by _lastUpdated
// while another client keeps updating and creating Tasks. The traversal shows every Task that
// existed when it began, once, in the order of that moment, each as it was then.
func TestSearch_PagingWhileOthersWrite(t *testing.T) {
	fhirtest.ForEachStore(t, func(t *testing.T, h storetest.Harness) {
		s := start(t, h)
		taskJSON := func(id, owner, note string) []byte {
			idPart := ""
			if id != "" {
				idPart = fmt.Sprintf(`"id":%q,`, id)
			}
			return []byte(fmt.Sprintf(`{"resourceType":"Task",%s"status":"requested","intent":"order","description":%q,"owner":{"reference":%q}}`, idPart, note, owner))
		}
		since := time.Now().UTC().Add(-time.Minute).Format(time.RFC3339)
		var want []string
		lastUpdated := map[string]string{}
		for i := 0; i < 10; i++ {
			res := create(t, s, "Task", taskJSON("", "Organization/cbo-a", "first"))
			id := res["id"].(string)
			want = append(want, id)
			_, lastUpdated[id] = meta(res)
		}
		next := s.Base + "/Task?owner=Organization/cbo-a&_lastUpdated=gt" + since + "&_sort=_lastUpdated&_count=3"
		var got []string
		var stop chan struct{}
		var wg sync.WaitGroup
		for page := 0; next != ""; page++ {
			r := s.Do("GET", next, nil)
			wantStatus(t, r, http.StatusOK)
			b := r.JSON(t)
			entries, _ := b["entry"].([]any)
			for _, e := range entries {
				res := e.(map[string]any)["resource"].(map[string]any)
				id := res["id"].(string)
				got = append(got, id)
				if version, lu := meta(res); version != "1" || lu != lastUpdated[id] || res["description"] != "first" {
					t.Errorf("%s shown as version %s of %s (%v); want version 1 of %s, as when the search began", id, version, lu, res["description"], lastUpdated[id])
				}
			}
			next = ""
			for _, l := range b["link"].([]any) {
				if m := l.(map[string]any); m["relation"] == "next" {
					next = m["url"].(string)
				}
			}
			if page == 0 {
				// The writer starts once the first page is out: every write it makes is made
				// after the search began.
				stop = make(chan struct{})
				wg.Add(1)
				go func() {
					defer wg.Done()
					rng := rand.New(rand.NewPCG(1, 2))
					for n := 0; ; n++ {
						select {
						case <-stop:
							return
						default:
						}
						id := want[rng.IntN(len(want))]
						owner := "Organization/cbo-a"
						if n%5 == 4 {
							owner = "Organization/cbo-b"
						}
						if r := s.Do("PUT", "/fhir/Task/"+id, taskJSON(id, owner, fmt.Sprint("edit ", n))); r.Status != http.StatusOK {
							t.Errorf("update: %d %s", r.Status, r.Body)
							return
						}
						if r := s.Do("POST", "/fhir/Task", taskJSON("", "Organization/cbo-a", "late")); r.Status != http.StatusCreated {
							t.Errorf("create: %d %s", r.Status, r.Body)
							return
						}
					}
				}()
				time.Sleep(20 * time.Millisecond)
			}
		}
		close(stop)
		wg.Wait()
		if !slices.Equal(got, want) {
			t.Fatalf("traversal %v\nwant every Task of the search's start, once, in that order: %v", got, want)
		}
		// The next poll, from the highest lastUpdated seen, finds what changed meanwhile.
		params := url.Values{"owner": {"Organization/cbo-a"}, "_lastUpdated": {"gt" + lastUpdated[want[len(want)-1]]}, "_count": {"1000"}}
		ids, _, _, _ := bundleIDs(t, s.Do("GET", "/fhir/Task?"+params.Encode(), nil))
		if len(ids) == 0 {
			t.Fatal("the next poll found none of the changes made during the traversal")
		}
	})
}

// TestSearch_TotalOnlyWhenAskedOrFree: Bundle.total is counted for _total=accurate (and
// estimate), reported when the first page holds every match, and left out otherwise.
func TestSearch_TotalOnlyWhenAskedOrFree(t *testing.T) {
	fhirtest.ForEachStore(t, func(t *testing.T, h storetest.Harness) {
		s := start(t, h)
		for i := 0; i < 3; i++ {
			create(t, s, "Task", []byte(`{"resourceType":"Task","status":"requested","intent":"order","owner":{"reference":"Organization/cbo-a"}}`))
		}
		create(t, s, "Task", []byte(`{"resourceType":"Task","status":"requested","intent":"order","owner":{"reference":"Organization/cbo-b"}}`))
		const absent = "<nil>"
		for _, tc := range []struct {
			query string
			want  []string // total per page
		}{
			{"Task?owner=Organization/cbo-a", []string{"3"}},                     // one page: free
			{"Task?owner=Organization/nobody", []string{"0"}},                    // no match: free
			{"Task?owner=Organization/cbo-a&_count=2", []string{absent, absent}}, // not asked, not free
			{"Task?owner=Organization/cbo-a&_count=2&_total=accurate", []string{"3", "3"}},
			{"Task?owner=Organization/cbo-a&_count=2&_total=estimate", []string{"3", "3"}},
			{"Task?owner=Organization/cbo-a&_total=none", []string{absent}},
			{"Task?_summary=count", []string{"4"}},
			{"Task?_count=0", []string{"4"}},
			{"?_type=Task", []string{"4"}},
			{"?_type=Task&_count=3", []string{absent, absent}},
			{"?_type=Task&_count=3&_total=accurate", []string{"4", "4"}},
		} {
			t.Run(tc.query, func(t *testing.T) {
				next := s.Base + "/" + tc.query
				var got []string
				for next != "" && len(got) < 10 {
					_, total, links, _ := bundleIDs(t, s.Do("GET", next, nil))
					got = append(got, total)
					next = links["next"]
				}
				if !slices.Equal(got, tc.want) {
					t.Fatalf("totals per page %v, want %v", got, tc.want)
				}
			})
		}
	})
}

// TestSearch_SnapshotPagingKeepsTenancy: the versions a traversal takes from history are
// judged with the caller's tenancy clause too. A CBO paging through its Tasks while the
// administrator updates Tasks of another CBO (and hands one of them over) sees exactly its own
// Tasks of the moment the search began.
func TestSearch_SnapshotPagingKeepsTenancy(t *testing.T) {
	fhirtest.ForEachStore(t, func(t *testing.T, h storetest.Harness) {
		s := start(t, h)
		tenancyWorld(t, s)
		task := func(id, cbo, side, note string) []byte {
			return []byte(fmt.Sprintf(`{"resourceType":"Task","id":%q,"status":"requested","description":%q,"intent":"order","focus":{"reference":"ServiceRequest/sr-%s"},`+
				`"for":{"reference":"Patient/%s"},"requester":{"reference":"Organization/prov-%s"},"owner":{"reference":"Organization/%s"}}`,
				id, note, side, map[string]string{"a": "ana", "b": "ben"}[side], map[string]string{"a": "1", "b": "2"}[side], cbo))
		}
		for i := 0; i < 4; i++ {
			wantStatus(t, s.Do("PUT", fmt.Sprintf("/fhir/Task/a%d", i), task(fmt.Sprintf("a%d", i), "cbo-a", "a", "requested")), http.StatusCreated)
			wantStatus(t, s.Do("PUT", fmt.Sprintf("/fhir/Task/b%d", i), task(fmt.Sprintf("b%d", i), "cbo-b", "b", "requested")), http.StatusCreated)
		}
		for _, caller := range []struct{ role, org string }{{"cbo", "Organization/cbo-a"}, {"plan", "Organization/plan-1"}} {
			as := []string{"Authorization", "Bearer " + s.Token(caller.role, caller.org, "")}
			whole, _, _, _ := bundleIDs(t, s.Do("GET", "/fhir/Task?_sort=_lastUpdated&_count=100", nil, as...))
			if len(whole) < 5 || slices.ContainsFunc(whole, func(id string) bool { return strings.HasPrefix(id, "b") || id == "task-b" }) {
				t.Fatalf("%s sees %v before the traversal", caller.org, whole)
			}
			next := s.Base + "/Task?_sort=_lastUpdated&_count=2"
			var got []string
			for page := 0; next != ""; page++ {
				ids, _, links, _ := bundleIDs(t, s.Do("GET", next, nil, as...))
				got = append(got, ids...)
				next = links["next"]
				// Between pages the administrator changes the other referral's Tasks, and one
				// of the caller's.
				for i := 0; i < 4; i++ {
					if i != 3 {
						wantStatus(t, s.Do("PUT", fmt.Sprintf("/fhir/Task/b%d", i), task(fmt.Sprintf("b%d", i), "cbo-b", "b", fmt.Sprint("edit ", page))), http.StatusOK)
					}
				}
				if page == 0 {
					// Handed over to cbo-a after the start (still ben's, so not the plan's).
					wantStatus(t, s.Do("PUT", "/fhir/Task/b3", task("b3", "cbo-a", "b", caller.org)), http.StatusOK)
					wantStatus(t, s.Do("PUT", "/fhir/Task/"+whole[0], task(whole[0], "cbo-a", "a", "edited")), http.StatusOK)
				}
			}
			if !slices.Equal(got, whole) {
				t.Fatalf("%s's traversal %v, want its Tasks at the start %v", caller.org, got, whole)
			}
			wantStatus(t, s.Do("PUT", "/fhir/Task/b3", task("b3", "cbo-b", "b", "back")), http.StatusOK)
		}
	})
}
