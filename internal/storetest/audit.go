package storetest

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/calaimfhir/calaimfhir/resources"
)

// The audit trail (resources.AuditLog): every store of this project keeps one.

func init() {
	register("Audit/AppendRead", testAuditAppendRead)
	register("Audit/Search", testAuditSearch)
	register("Audit/Purge", testAuditPurge)
}

func auditLog(t *testing.T, h Harness) resources.AuditLog {
	t.Helper()
	s, _ := h.OpenFresh(t)
	al, ok := s.(resources.AuditLog)
	if !ok {
		t.Fatalf("%s store does not implement resources.AuditLog", h.Name)
	}
	return al
}

// auditFixture builds n records spread over n minutes before base, cycling through callers,
// actions, outcomes, subtypes and entities so that every filter selects a different subset.
func auditFixture(n int, base time.Time) []*resources.AuditRecord {
	callers := []struct{ sub, client, org, role string }{
		{"alice", "app-plan", "Organization/plan-1", "plan"},
		{"bob", "app-cbo", "Organization/cbo-a", "cbo"},
		{"carol", "app-cbo", "Organization/cbo-b", "cbo"},
		{"", "", "", ""}, // no token
	}
	kinds := []struct {
		subtype, action string
		status          int
	}{
		{"create", "C", 201}, {"read", "R", 200}, {"search-type", "E", 200}, {"update", "U", 200},
		{"delete", "D", 204}, {"read", "R", 404}, {"transaction", "E", 200}, {"read", "R", 503},
		{"search-type", "E", 500}, {"read", "R", 401},
	}
	var out []*resources.AuditRecord
	for i := 0; i < n; i++ {
		c, k := callers[i%len(callers)], kinds[i%len(kinds)]
		rec := &resources.AuditRecord{
			ID:       fmt.Sprintf("rec-%03d", i),
			Recorded: base.Add(-time.Duration(n-i) * time.Minute),
			Subtype:  k.subtype, Action: k.action, Status: k.status, Outcome: resources.AuditOutcome(k.status),
			Method:  "GET",
			Subject: c.sub, ClientID: c.client, Org: c.org, Role: c.role,
			Address: "10.0.0.1", RequestID: fmt.Sprintf("req-%d", i),
		}
		rec.Start = rec.Recorded.Add(-3 * time.Millisecond)
		switch k.subtype {
		case "search-type":
			rec.Type, rec.Query = "Patient", "name=garcia&_count=5"
		case "transaction":
			rec.Entities = []string{fmt.Sprintf("Patient/p%d/_history/1", i%3), fmt.Sprintf("Task/t%d/_history/2", i%5)}
		default:
			typ := []string{"Patient", "Task"}[i%2]
			rec.Type = typ
			rec.Entities = []string{fmt.Sprintf("%s/%s%d", typ, strings.ToLower(typ[:1]), i%3)}
		}
		// Records are written with microsecond times; two records share one instant, so that
		// paging must break ties by id.
		if i%7 == 3 {
			rec.Recorded = out[len(out)-1].Recorded
		}
		out = append(out, rec)
	}
	return out
}

func testAuditAppendRead(t *testing.T, h Harness) {
	al := auditLog(t, h)
	recs := auditFixture(12, time.Now().UTC().Truncate(time.Microsecond))
	if err := al.AppendAudit(ctx(t), recs); err != nil {
		t.Fatal(err)
	}
	// A retried batch (the acknowledgement was lost) does not double any record.
	if err := al.AppendAudit(ctx(t), recs[5:]); err != nil {
		t.Fatalf("append again: %v", err)
	}
	if err := al.AppendAudit(ctx(t), nil); err != nil {
		t.Fatalf("append nothing: %v", err)
	}
	for _, want := range recs {
		got, err := al.ReadAudit(ctx(t), want.ID)
		if err != nil {
			t.Fatalf("read %s: %v", want.ID, err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("read %s (-want +got):\n%s", want.ID, diff)
		}
	}
	if _, err := al.ReadAudit(ctx(t), "no-such-record"); !resources.IsKind(err, resources.KindNotFound) {
		t.Errorf("read of an unknown id: got %v, want not-found", err)
	}
	page, err := al.SearchAudit(ctx(t), &resources.AuditQuery{Count: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Records) != len(recs) || page.Next != nil {
		t.Errorf("search of everything: %d records (next %v), want %d", len(page.Records), page.Next, len(recs))
	}
}

// searchAll follows the pages of q and returns the ids in order.
func auditSearchAll(t *testing.T, al resources.AuditLog, q resources.AuditQuery) []string {
	t.Helper()
	var ids []string
	for pages := 0; ; pages++ {
		if pages > 100 {
			t.Fatal("paging does not end")
		}
		page, err := al.SearchAudit(ctx(t), &q)
		if err != nil {
			t.Fatalf("search %+v: %v", q, err)
		}
		if len(page.Records) > q.Count {
			t.Fatalf("page of %d records, _count %d", len(page.Records), q.Count)
		}
		for _, r := range page.Records {
			ids = append(ids, r.ID)
		}
		if page.Next == nil {
			return ids
		}
		q.After = page.Next
	}
}

func testAuditSearch(t *testing.T, h Harness) {
	al := auditLog(t, h)
	base := time.Now().UTC().Truncate(time.Microsecond)
	recs := auditFixture(70, base)
	if err := al.AppendAudit(ctx(t), recs); err != nil {
		t.Fatal(err)
	}
	// newest first, ties by id descending
	sorted := slices.Clone(recs)
	slices.SortFunc(sorted, func(a, b *resources.AuditRecord) int {
		if c := b.Recorded.Compare(a.Recorded); c != 0 {
			return c
		}
		return strings.Compare(b.ID, a.ID)
	})
	agent := func(v ...string) []string {
		for i := range v {
			v[i] = resources.AuditAgentKey + v[i]
		}
		return v
	}
	tests := []struct {
		name string
		q    resources.AuditQuery
		min  int // the fixture must give at least this many matches, or the case proves little
	}{
		{"everything", resources.AuditQuery{}, 70},
		{"by subject", resources.AuditQuery{Keys: [][]string{agent("alice")}}, 10},
		{"by client id", resources.AuditQuery{Keys: [][]string{agent("app-cbo")}}, 20},
		{"by organization", resources.AuditQuery{Keys: [][]string{agent("Organization/cbo-b")}}, 10},
		{"agent alternatives", resources.AuditQuery{Keys: [][]string{agent("alice", "carol")}}, 20},
		{"agent and entity", resources.AuditQuery{Keys: [][]string{agent("app-cbo"), {resources.AuditEntityKey + "Patient/p1"}}}, 2},
		{"entity of any version", resources.AuditQuery{Keys: [][]string{{resources.AuditEntityKey + "Task/t2"}}}, 1},
		{"entity type", resources.AuditQuery{Keys: [][]string{{resources.AuditEntityTypeKey + "Task"}}}, 10},
		{"action", resources.AuditQuery{Actions: []string{"C", "D"}}, 10},
		{"outcome", resources.AuditQuery{Outcomes: []int{resources.AuditMinorFailure}}, 10},
		{"major failure", resources.AuditQuery{Outcomes: []int{resources.AuditMajorFailure, resources.AuditSeriousFailure}}, 10},
		{"subtype", resources.AuditQuery{Subtypes: []string{"search-type"}}, 10},
		{"date range", resources.AuditQuery{From: base.Add(-50 * time.Minute), To: base.Add(-20 * time.Minute)}, 25},
		{"date and action", resources.AuditQuery{From: base.Add(-40 * time.Minute), Actions: []string{"R"}}, 10},
		{"no match", resources.AuditQuery{Keys: [][]string{agent("nobody")}}, 0},
		{"empty range", resources.AuditQuery{From: base, To: base.Add(time.Hour)}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var want []string
			for _, r := range sorted {
				if tc.q.Matches(r) {
					want = append(want, r.ID)
				}
			}
			if len(want) < tc.min {
				t.Fatalf("fixture gives %d matches, the case needs at least %d", len(want), tc.min)
			}
			for _, count := range []int{1000, 7, 1} {
				q := tc.q
				q.Count = count
				got := auditSearchAll(t, al, q)
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("_count %d (-want +got):\n%s", count, diff)
				}
			}
		})
	}
}

func testAuditPurge(t *testing.T, h Harness) {
	al := auditLog(t, h)
	base := time.Now().UTC().Truncate(time.Microsecond)
	recs := auditFixture(40, base) // one a minute, 40 to 1 minute(s) before base
	if err := al.AppendAudit(ctx(t), recs); err != nil {
		t.Fatal(err)
	}
	cut := base.Add(-25 * time.Minute)
	var kept []string
	var purged int64
	for _, r := range recs {
		if r.Recorded.Before(cut) {
			purged++
		} else {
			kept = append(kept, r.ID)
		}
	}
	n, err := al.PurgeAudit(ctx(t), cut)
	if err != nil {
		t.Fatal(err)
	}
	if n != purged {
		t.Errorf("purge reports %d records, want %d", n, purged)
	}
	got := auditSearchAll(t, al, resources.AuditQuery{Count: 1000})
	slices.Sort(got)
	if diff := cmp.Diff(kept, got); diff != "" {
		t.Errorf("after the purge (-want +got):\n%s", diff)
	}
	// The purged records are gone from the key index too: a search by agent finds only kept ones.
	for _, id := range auditSearchAll(t, al, resources.AuditQuery{Count: 1000, Keys: [][]string{{resources.AuditAgentKey + "alice"}}}) {
		if !slices.Contains(kept, id) {
			t.Errorf("search by agent returns purged record %s", id)
		}
	}
	if _, err := al.ReadAudit(ctx(t), recs[0].ID); !resources.IsKind(err, resources.KindNotFound) {
		t.Errorf("read of a purged record: got %v, want not-found", err)
	}
	if n, err := al.PurgeAudit(ctx(t), cut); err != nil || n != 0 {
		t.Errorf("second purge: %d, %v; want 0, nil", n, err)
	}
}
