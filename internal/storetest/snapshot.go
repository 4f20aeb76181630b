package storetest

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/calaimfhir/calaimfhir/internal/r4"
	"github.com/calaimfhir/calaimfhir/resources"
)

// Snapshot paging runs in the Service (resources/snapshot.go) over each store's Search,
// History and VRead, so these tests drive a real Service on the store under test.

func snapshotService(s resources.Store) *resources.Service {
	return &resources.Service{Store: s, Validate: r4.Validate}
}

func taskBody(id, owner, status, authored string) []byte {
	doc := map[string]any{"resourceType": "Task", "status": status, "intent": "order",
		"owner": map[string]any{"reference": "Organization/" + owner}, "authoredOn": authored}
	if id != "" {
		doc["id"] = id
	}
	b, _ := json.Marshal(doc)
	return b
}

// traversal pages through a search, handing each next cursor through its text form as a
// client would, and calls between(page number) after every page but the last.
type traversal struct {
	ids      []string
	versions []*resources.Resource
	totals   []int64
}

func traverse(t *testing.T, svc *resources.Service, typ, query string, between func(page int)) traversal {
	t.Helper()
	params, err := url.ParseQuery(query)
	if err != nil {
		t.Fatal(err)
	}
	var tr traversal
	for page := 0; ; page++ {
		if page > 200 {
			t.Fatal("too many pages")
		}
		sr, err := resources.ParseSearch(typ, params, "", true)
		if err != nil {
			t.Fatalf("ParseSearch(%s): %v", query, err)
		}
		p, err := svc.Search(ctx(t), sr)
		if err != nil {
			t.Fatalf("Search page %d: %v", page, err)
		}
		tr.totals = append(tr.totals, p.Total)
		for _, r := range p.Resources {
			tr.ids = append(tr.ids, r.ID)
			tr.versions = append(tr.versions, r)
		}
		if p.Next == nil {
			return tr
		}
		params.Set("_cursor", resources.EncodeCursor(p.Next))
		between(page)
	}
}

func duplicates(ids []string) []string {
	seen := map[string]bool{}
	var dup []string
	for _, id := range ids {
		if seen[id] {
			dup = append(dup, id)
		}
		seen[id] = true
	}
	return dup
}

func init() {
	register("Search_Snapshot_UpdatesDuringTraversal_NoDuplicatesNoGaps", func(t *testing.T, h Harness) {
		s, _ := h.OpenFresh(t)
		svc := snapshotService(s)
		since := time.Now().UTC().Add(-time.Second).Format(time.RFC3339)
		var mine []string // the cbo's Tasks when the search begins, in lastUpdated order
		for i := 0; i < 9; i++ {
			r, _, err := svc.Create(ctx(t), "Task", taskBody("", "cbo", "requested", "2024-01-01"), "")
			if err != nil {
				t.Fatal(err)
			}
			mine = append(mine, r.ID)
			if _, _, err := svc.Create(ctx(t), "Task", taskBody("", "other", "requested", "2024-01-01"), ""); err != nil {
				t.Fatal(err)
			}
		}
		outsider, _, err := svc.Create(ctx(t), "Task", taskBody("", "other", "requested", "2024-01-01"), "")
		if err != nil {
			t.Fatal(err)
		}
		update := func(id, owner, status string) {
			t.Helper()
			if _, _, err := svc.Update(ctx(t), "Task", id, taskBody(id, owner, status, "2024-01-01"), 0); err != nil {
				t.Fatal(err)
			}
		}
		tr := traverse(t, svc, "Task", "owner=Organization/cbo&_lastUpdated=gt"+since+"&_sort=_lastUpdated&_count=2&_total=accurate", func(page int) {
			switch page {
			case 0:
				update(mine[0], "cbo", "accepted") // seen already: moves behind the cursor
				update(mine[5], "cbo", "accepted") // not seen yet: moves to the end
				if _, _, err := svc.Create(ctx(t), "Task", taskBody("", "cbo", "requested", "2024-01-01"), ""); err != nil {
					t.Fatal(err)
				}
			case 1:
				update(mine[6], "elsewhere", "requested") // reassigned away: it matched when the search began
				update(outsider.ID, "cbo", "requested")   // reassigned here: it did not
				if _, err := svc.Delete(ctx(t), "Task", mine[7], 0, false); err != nil {
					t.Fatal(err)
				}
				update(mine[5], "cbo", "in-progress") // a second change of the same Task
			}
		})
		if d := duplicates(tr.ids); len(d) > 0 {
			t.Errorf("seen twice: %v", d)
		}
		if !slices.Equal(tr.ids, mine) {
			t.Errorf("traversal = %v\nwant the Tasks as they were when it began, in their order then: %v", tr.ids, mine)
		}
		for i, total := range tr.totals {
			if total != int64(len(mine)) {
				t.Errorf("page %d: total %d, want %d (the matches when the search began)", i, total, len(mine))
			}
		}
		for _, r := range tr.versions {
			if r.VersionID != 1 {
				t.Errorf("%s: version %d shown, want version 1 (current when the search began)", r.ID, r.VersionID)
			}
		}
		// A new search sees the present: the updates, the new Task and the reassignment.
		fresh := traverse(t, svc, "Task", "owner=Organization/cbo&_sort=_lastUpdated&_count=100", func(int) {})
		if len(fresh.ids) != len(mine)-2+2 || !slices.Contains(fresh.ids, outsider.ID) || slices.Contains(fresh.ids, mine[6]) || slices.Contains(fresh.ids, mine[7]) {
			t.Errorf("a new search: %v", fresh.ids)
		}
		if fresh.ids[len(fresh.ids)-1] != mine[5] {
			t.Errorf("a new search should end with the last updated Task %s: %v", mine[5], fresh.ids)
		}
	})

	register("Search_Snapshot_SortOrders_RandomWritesBetweenPages", func(t *testing.T, h Harness) {
		s, _ := h.OpenFresh(t)
		svc := snapshotService(s)
		rng := rand.New(rand.NewPCG(7, 11))
		statuses := []string{"requested", "accepted", "in-progress"}
		var all []string
		for i := 0; i < 16; i++ {
			day := fmt.Sprintf("2024-03-%02d", 1+rng.IntN(5))
			r, _, err := svc.Create(ctx(t), "Task", taskBody("", "cbo", statuses[rng.IntN(3)], day), "")
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, r.ID)
		}
		for _, query := range []string{
			"owner=Organization/cbo&_sort=_lastUpdated&_count=3",
			"owner=Organization/cbo&_sort=-_lastUpdated&_count=3",
			"owner=Organization/cbo&_sort=authored-on&_count=3",
			"owner=Organization/cbo&_sort=-authored-on,status&_count=4",
			"owner=Organization/cbo&status=requested,accepted&_count=2",
		} {
			t.Run(query, func(t *testing.T) {
				before := traverse(t, svc, "Task", query+"&_count=100", func(int) {})
				tr := traverse(t, svc, "Task", query, func(int) {
					// Two random updates (new authored-on, status and sometimes owner) and a create.
					for n := 0; n < 2; n++ {
						id := all[rng.IntN(len(all))]
						owner := "cbo"
						if rng.IntN(4) == 0 {
							owner = "away"
						}
						day := fmt.Sprintf("2024-03-%02d", 1+rng.IntN(5))
						if _, _, err := svc.Update(ctx(t), "Task", id, taskBody(id, owner, statuses[rng.IntN(3)], day), 0); err != nil {
							t.Fatal(err)
						}
					}
					r, _, err := svc.Create(ctx(t), "Task", taskBody("", "cbo", "requested", "2024-03-03"), "")
					if err != nil {
						t.Fatal(err)
					}
					all = append(all, r.ID)
				})
				if !slices.Equal(tr.ids, before.ids) {
					t.Errorf("with writes between pages: %v\nthe same search in one page before them: %v", tr.ids, before.ids)
				}
			})
		}
	})

	register("Search_Snapshot_CursorCarriesTheSnapshot", func(t *testing.T, h Harness) {
		s, _ := h.OpenFresh(t)
		svc := snapshotService(s)
		for i := 0; i < 3; i++ {
			if _, _, err := svc.Create(ctx(t), "Task", taskBody("", "cbo", "requested", "2024-01-01"), ""); err != nil {
				t.Fatal(err)
			}
		}
		sr, err := resources.ParseSearch("Task", url.Values{"_count": {"1"}}, "", true)
		if err != nil {
			t.Fatal(err)
		}
		p, err := svc.Search(ctx(t), sr)
		if err != nil || p.Next == nil || p.Next.Snapshot.IsZero() {
			t.Fatalf("first page: next %+v, err %v; want a cursor with its snapshot", p.Next, err)
		}
		c, err := resources.DecodeCursor(resources.EncodeCursor(p.Next))
		if err != nil || !c.Snapshot.Equal(p.Next.Snapshot) || c.ID != p.Next.ID {
			t.Fatalf("cursor round trip: %+v, %v; want %+v", c, err, p.Next)
		}
	})
}
