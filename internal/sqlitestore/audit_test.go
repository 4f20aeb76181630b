package sqlitestore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/calaimfhir/calaimfhir/resources"
)

func TestAuditPostings(t *testing.T) {
	at := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	rec := func(id string, sec int, entity string) *resources.AuditRecord {
		return &resources.AuditRecord{ID: id, Recorded: at.Add(time.Duration(sec) * time.Second),
			Subject: "nurse", Org: "Organization/plan", Type: "Patient", Entities: []string{entity}}
	}
	got, staged := auditPostings([]*resources.AuditRecord{
		rec("r2", 2, "Patient/a"), rec("r1", 5, "Patient/b"), rec("r3", 1, "Patient/a/_history/3"),
	})
	us := func(sec int) int64 { return at.Add(time.Duration(sec) * time.Second).UnixMicro() }
	want := []auditPosting{
		{key: "a|nurse", t: us(5), id: "r1", last: "r3"},
		{key: "a|Organization/plan", t: us(5), id: "r1", last: "r3"},
		{key: "t|Patient", t: us(5), id: "r1", last: "r3"},
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(auditPosting{})); diff != "" {
		t.Errorf("postings (-want +got):\n%s", diff)
	}
	// Entity keys are staged one row per record (t, id, key).
	wantStaged := []any{us(2), "r2", "e|Patient/a", us(5), "r1", "e|Patient/b", us(1), "r3", "e|Patient/a"}
	if diff := cmp.Diff(wantStaged, staged); diff != "" {
		t.Errorf("staged (-want +got):\n%s", diff)
	}
}

// auditRecords makes n records a millisecond apart, ending at end, from three callers over
// 50 patients; every fifth shares its time with the one before.
func auditRecords(n int, end time.Time) []*resources.AuditRecord {
	var out []*resources.AuditRecord
	for i := range n {
		r := &resources.AuditRecord{
			ID:       fmt.Sprintf("%016x-%05d", i, i),
			Recorded: end.Add(-time.Duration(n-i) * time.Millisecond),
			Subtype:  "read", Action: "R", Status: 200, Outcome: 0, Method: "GET",
			Subject: []string{"ann", "ben", "cy"}[i%3], Org: "Organization/plan", Type: "Patient",
			Entities: []string{fmt.Sprintf("Patient/p%d", i%50)},
		}
		if i%5 == 4 {
			r.Recorded = out[i-1].Recorded
		}
		out = append(out, r)
	}
	return out
}

// orphanPostings counts audit_keys rows none of whose records is left: for a range posting,
// no record left in its range has its key.
func orphanPostings(t *testing.T, s *Store) int {
	t.Helper()
	keys := map[string][]string{} // record id: its keys
	var ids []string              // every record left, in order
	rows, err := s.r.Query(`SELECT ` + auditColumns + ` FROM audit_events ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		r, err := scanAudit(rows)
		if err != nil {
			t.Fatal(err)
		}
		keys[r.ID] = resources.AuditKeys(r)
		ids = append(ids, r.ID)
	}
	if err := rows.Close(); err != nil {
		t.Fatal(err)
	}
	rows, err = s.r.Query(`SELECT key, id, coalesce(ids, ''), coalesce(last, '') FROM audit_keys`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var key, id, list, last string
		if err := rows.Scan(&key, &id, &list, &last); err != nil {
			t.Fatal(err)
		}
		recs := []string{id}
		switch {
		case last != "":
			lo, _ := slices.BinarySearch(ids, id)
			hi, found := slices.BinarySearch(ids, last)
			if found {
				hi++
			}
			recs = ids[lo:hi]
		case list != "":
			if err := json.Unmarshal([]byte(list), &recs); err != nil {
				t.Fatal(err)
			}
		}
		if !slices.ContainsFunc(recs, func(id string) bool { return slices.Contains(keys[id], key) }) {
			n++
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestAuditPurge_Rounds: a purge of more than purgeBatch records runs in rounds; whatever the
// cutoff, searches by key find exactly the records left, and no posting outlives its records.
func TestAuditPurge_Rounds(t *testing.T) {
	ctx := context.Background()
	end := time.Now().UTC().Truncate(time.Microsecond)
	recs := auditRecords(3*purgeBatch+300, end)
	// Entity keys move from audit_staged to audit_keys every 700 rows here, so both hold some.
	defer func(n int) { auditStageMax = n }(auditStageMax)
	auditStageMax = 700
	for _, cut := range []int{0, 7, purgeBatch, 2*purgeBatch + 513, len(recs)} {
		t.Run(fmt.Sprint("cut=", cut), func(t *testing.T) {
			s, err := Open(ctx, t.TempDir(), Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			for i := 0; i < len(recs); i += 256 { // batches as the server writes them
				if err := s.AppendAudit(ctx, recs[i:min(i+256, len(recs))]); err != nil {
					t.Fatal(err)
				}
			}
			before := end.Add(time.Hour)
			if cut < len(recs) {
				before = recs[cut].Recorded
			}
			var left []*resources.AuditRecord
			for _, r := range recs {
				if !r.Recorded.Before(before) {
					left = append(left, r)
				}
			}
			n, err := s.PurgeAudit(ctx, before)
			if err != nil {
				t.Fatal(err)
			}
			if want := len(recs) - len(left); n != int64(want) {
				t.Errorf("purged %d, want %d", n, want)
			}
			for _, key := range [][]string{{"a|ben"}, {"e|Patient/p7"}, {"t|Patient"}, {"a|ann", "a|cy"}} {
				q := resources.AuditQuery{Keys: [][]string{key}, Count: 5000}
				var want []string
				for _, r := range left {
					if q.Matches(r) {
						want = append(want, r.ID)
					}
				}
				if diff := cmp.Diff(want, searchIDs(t, s, q)); diff != "" {
					t.Errorf("search %v after the purge (-want +got):\n%s", key, diff)
				}
			}
			if o := orphanPostings(t, s); o != 0 {
				t.Errorf("%d postings list only purged records", o)
			}
			var staged, moved int
			if err := s.r.QueryRow(`SELECT count(*) FROM audit_staged WHERE t < ?`, micros(before)).Scan(&staged); err != nil || staged != 0 {
				t.Errorf("%d staged keys of purged records (%v)", staged, err)
			}
			if err := s.r.QueryRow(`SELECT count(*) FROM audit_keys WHERE key LIKE 'e|%' AND ids IS NOT NULL`).Scan(&moved); err != nil || (cut < purgeBatch && moved == 0) {
				t.Errorf("%d moved entity postings with several records, want some (%v)", moved, err)
			}
		})
	}
}

// TestMigrateAuditPostings: a database whose audit_keys has one row per record and key (no
// ids column) is opened, searched and purged as before, and new records go in as postings.
func TestMigrateAuditPostings(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	end := time.Now().UTC().Truncate(time.Microsecond)
	recs := auditRecords(60, end)
	s, err := Open(ctx, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	// The old layout, with the rows the old code wrote.
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	stmts := []string{`DROP TABLE audit_keys`,
		`CREATE TABLE audit_keys (key TEXT NOT NULL, t INTEGER NOT NULL, id TEXT NOT NULL, PRIMARY KEY (key, t, id)) WITHOUT ROWID`}
	for _, stmt := range stmts {
		if _, err := db.Exec(stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	for _, r := range recs[:40] {
		if _, err := db.Exec(`INSERT INTO audit_events (id, t, action, outcome, subtype, rec) VALUES (?, ?, ?, ?, ?, ?)`,
			r.ID, micros(r.Recorded), r.Action, r.Outcome, r.Subtype, mustJSON(t, r)); err != nil {
			t.Fatal(err)
		}
		for _, k := range resources.AuditKeys(r) {
			if _, err := db.Exec(`INSERT INTO audit_keys (key, t, id) VALUES (?, ?, ?)`, k, micros(r.Recorded), r.ID); err != nil {
				t.Fatal(err)
			}
		}
	}
	db.Close()

	s, err = Open(ctx, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.AppendAudit(ctx, recs[40:]); err != nil {
		t.Fatal(err)
	}
	search := func(key string) []string {
		return searchIDs(t, s, resources.AuditQuery{Keys: [][]string{{key}}, Count: 1000})
	}
	var want []string
	for _, r := range recs {
		if r.Subject == "ben" {
			want = append(want, r.ID)
		}
	}
	if diff := cmp.Diff(want, search("a|ben")); diff != "" {
		t.Errorf("old and new records by agent (-want +got):\n%s", diff)
	}
	if _, err := s.PurgeAudit(ctx, recs[50].Recorded); err != nil {
		t.Fatal(err)
	}
	if got := search("t|Patient"); len(got) != 10 {
		t.Errorf("after the purge %d records by type, want 10", len(got))
	}
	if o := orphanPostings(t, s); o != 0 {
		t.Errorf("%d postings list only purged records", o)
	}
}

// searchIDs returns the ids of the first page q finds, sorted.
func searchIDs(t *testing.T, s *Store, q resources.AuditQuery) []string {
	t.Helper()
	page, err := s.SearchAudit(context.Background(), &q)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range page.Records {
		ids = append(ids, r.ID)
	}
	slices.Sort(ids)
	return ids
}

func mustJSON(t *testing.T, r *resources.AuditRecord) []byte {
	t.Helper()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestAuditRec: a record goes through its row (the columns and the compact rec) unchanged,
// whatever its fields hold; a rec cut short or with bytes after it is an error, not a panic
// or a wrong record; a JSON rec of an older build still reads.
func TestAuditRec(t *testing.T) {
	at := time.Date(2026, 12, 7, 21, 0, 0, 123456000, time.UTC)
	full := &resources.AuditRecord{ID: "00066212-a", Recorded: at, Start: at.Add(-1500 * time.Microsecond),
		Subtype: "transaction", Action: "E", Outcome: resources.AuditMinorFailure, Status: 422, Method: "POST",
		Subject: "nurse-7", ClientID: "ehr", Org: "Organization/clinic-1", Role: "clinic", Address: "2001:db8::1",
		RequestID: "r-1", Type: "Bundle", Query: "name=garc%C3%ADa&_count=5", Operation: "$submit", Path: "/fhir/x",
		Entities: []string{"Patient/a/_history/1", "Task/ü/_history/2", strings.Repeat("x", 300)}}
	typical := &resources.AuditRecord{ID: "000662121783cf5ee41456eb8023ef9c", Recorded: at, Start: at.Add(-300 * time.Microsecond),
		Subtype: "read", Action: "R", Status: 200, Method: "GET", Subject: "nurse-7", ClientID: "plan-app",
		Org: "Organization/plan-1", Role: "plan", Address: "10.1.2.3", RequestID: "174c3b218a1517cc",
		Type: "Patient", Entities: []string{"Patient/p-1"}}
	for _, r := range []*resources.AuditRecord{
		full, typical,
		{ID: "bare", Recorded: at}, // zero Start, no strings, no entities
		{ID: "late", Recorded: at, Start: at.Add(time.Second), Status: -1, Entities: []string{""}},
	} {
		rec := encodeAuditRec(nil, r)
		got, err := decodeAuditRow(r.ID, micros(r.Recorded), r.Action, r.Outcome, r.Subtype, rec)
		if err != nil {
			t.Fatalf("%s: %v", r.ID, err)
		}
		if diff := cmp.Diff(r, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", r.ID, diff)
		}
	}
	// What the columns hold is not repeated, nor JSON's names: a read's record is a third.
	if c, j := len(encodeAuditRec(nil, typical)), len(mustJSON(t, typical)); c*3 > j {
		t.Errorf("compact rec of a read %d bytes, JSON %d: want a third at most", c, j)
	}
	rec := encodeAuditRec(nil, full)
	for n := range len(rec) {
		if r, err := decodeAuditRow(full.ID, micros(at), "E", 4, "transaction", rec[:n]); err == nil || !resources.IsKind(err, resources.KindInternal) {
			t.Errorf("rec cut to %d bytes: %+v, %v; want an internal error", n, r, err)
		}
	}
	if _, err := decodeAuditRow(full.ID, micros(at), "E", 4, "transaction", append(slices.Clip(rec), 0)); err == nil {
		t.Error("rec with a byte after it decoded")
	}
	got, err := decodeAuditRow("ignored", 0, "", 0, "", mustJSON(t, full))
	if err != nil || !cmp.Equal(full, got) {
		t.Errorf("JSON rec: %+v, %v", got, err)
	}
}
