package sqlitestore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
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
	got := auditPostings([]*resources.AuditRecord{
		rec("r2", 2, "Patient/a"), rec("r1", 5, "Patient/b"), rec("r3", 1, "Patient/a/_history/3"),
	})
	us := func(sec int) int64 { return at.Add(time.Duration(sec) * time.Second).UnixMicro() }
	all := []string{"r2", "r1", "r3"}
	want := []auditPosting{ // by key
		{key: "a|Organization/plan", t: us(5), id: "r1", ids: all, last: "r3"},
		{key: "a|nurse", t: us(5), id: "r1", ids: all, last: "r3"},
		{key: "e|Patient/a", t: us(2), id: "r2", ids: []string{"r2", "r3"}, last: "r3"}, // any version
		{key: "e|Patient/b", t: us(5), id: "r1", ids: []string{"r1"}, last: "r1"},
		{key: "t|Patient", t: us(5), id: "r1", ids: all, last: "r3"},
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(auditPosting{})); diff != "" {
		t.Errorf("postings (-want +got):\n%s", diff)
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
	// Records are posted every 700 here (one entity each), so some are and some wait past the
	// watermark.
	defer func(n int) { auditPostEvery = n }(auditPostEvery)
	auditPostEvery = 700
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
			wantSearches(t, s, left, []string{"a|ben"}, []string{"e|Patient/p7"}, []string{"t|Patient"}, []string{"a|ann", "a|cy"})
			if o := orphanPostings(t, s); o != 0 {
				t.Errorf("%d postings list only purged records", o)
			}
			// A round of 700 has about 230 records of each caller (a range), 14 of a patient (a list).
			var ranges, lists int
			if err := s.r.QueryRow(`SELECT count(last), count(ids) FROM audit_keys`).Scan(&ranges, &lists); err != nil ||
				(cut < purgeBatch && (ranges == 0 || lists == 0)) {
				t.Errorf("%d range and %d list postings, want some of each (%v)", ranges, lists, err)
			}
		})
	}
}

// TestAudit_LateRecord: a record older than the watermark when it arrives (a batch retried
// after a posting round) is posted by its own batch, and found by its keys.
func TestAudit_LateRecord(t *testing.T) {
	ctx := context.Background()
	s := openPostingEvery(t, 100)
	end := time.Now().UTC().Truncate(time.Microsecond)
	recs := auditRecords(300, end)
	late := recs[10]
	recs = slices.Delete(recs, 10, 11)
	for i := 0; i < len(recs); i += 50 {
		if err := s.AppendAudit(ctx, recs[i:min(i+50, len(recs))]); err != nil {
			t.Fatal(err)
		}
	}
	var posted int64
	if err := s.r.QueryRow(`SELECT t FROM audit_posted`).Scan(&posted); err != nil || posted <= micros(late.Recorded) {
		t.Fatalf("watermark %d, want past the late record's %d (%v)", posted, micros(late.Recorded), err)
	}
	late.Entities = []string{"Patient/late-one"}
	if err := s.AppendAudit(ctx, []*resources.AuditRecord{late}); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := s.r.QueryRow(`SELECT count(*) FROM audit_keys WHERE key = 'e|Patient/late-one' AND id = ?`, late.ID).Scan(&n); err != nil || n != 1 {
		t.Errorf("%d postings of the late record's entity (%v)", n, err)
	}
	for _, key := range []string{"e|Patient/late-one", "a|" + late.Subject} {
		q := resources.AuditQuery{Keys: [][]string{{key}}, Count: 1000}
		if got := searchIDs(t, s, q); !slices.Contains(got, late.ID) {
			t.Errorf("search %s: the late record is not found", key)
		}
	}
}

// TestMigrateAuditPosted: a database of the build that staged entity keys in audit_staged
// (and posted the other keys with each batch) gets its staged keys moved into audit_keys, the
// table dropped and the watermark past its records, which every search still finds.
func TestMigrateAuditPosted(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	recs := auditRecords(90, time.Now().UTC().Truncate(time.Microsecond))
	s, err := Open(ctx, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	for _, stmt := range []string{`DROP TABLE audit_posted`,
		`CREATE TABLE audit_staged (t INTEGER NOT NULL, id TEXT NOT NULL, key TEXT NOT NULL, PRIMARY KEY (t, id, key)) WITHOUT ROWID`} {
		if _, err := db.Exec(stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	for _, r := range recs {
		if _, err := db.Exec(`INSERT INTO audit_events (id, t, action, outcome, subtype, rec) VALUES (?, ?, ?, ?, ?, ?)`,
			r.ID, micros(r.Recorded), r.Action, r.Outcome, r.Subtype, mustJSON(t, r)); err != nil {
			t.Fatal(err)
		}
		for _, k := range resources.AuditKeys(r) {
			stmt := `INSERT OR IGNORE INTO audit_keys (key, t, id) VALUES (?, ?, ?)`
			if strings.HasPrefix(k, resources.AuditEntityKey) {
				stmt = `INSERT INTO audit_staged (key, t, id) VALUES (?, ?, ?)`
			}
			if _, err := db.Exec(stmt, k, micros(r.Recorded), r.ID); err != nil {
				t.Fatal(err)
			}
		}
	}
	db.Close()

	if s, err = Open(ctx, dir, Options{}); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var staged, posted int64
	if err := s.r.QueryRow(`SELECT count(*) FROM sqlite_schema WHERE name = 'audit_staged'`).Scan(&staged); err != nil || staged != 0 {
		t.Errorf("audit_staged left (%v)", err)
	}
	if err := s.r.QueryRow(`SELECT t FROM audit_posted`).Scan(&posted); err != nil || posted != micros(recs[len(recs)-1].Recorded)+1 {
		t.Errorf("watermark %d, want just past the last record (%v)", posted, err)
	}
	wantSearches(t, s, recs, []string{"e|Patient/p7"}, []string{"a|ben"}, []string{"t|Patient"})
	var entityPostings int
	if err := s.r.QueryRow(`SELECT count(*) FROM audit_keys WHERE key LIKE 'e|%'`).Scan(&entityPostings); err != nil || entityPostings != 50 {
		t.Errorf("%d entity postings, want one per patient, 50 (%v)", entityPostings, err)
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

// wantSearches checks that a search by each clause of keys finds exactly the records of recs
// (sorted by id) that match it.
func wantSearches(t *testing.T, s *Store, recs []*resources.AuditRecord, clauses ...[]string) {
	t.Helper()
	for _, clause := range clauses {
		q := resources.AuditQuery{Keys: [][]string{clause}, Count: 5000}
		var want []string
		for _, r := range recs {
			if q.Matches(r) {
				want = append(want, r.ID)
			}
		}
		slices.Sort(want)
		if diff := cmp.Diff(want, searchIDs(t, s, q)); diff != "" {
			t.Errorf("search %v (-want +got):\n%s", clause, diff)
		}
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

// inOneGroup queues the jobs, in order, behind a held writer, so that they run in one group,
// and returns their errors in that order.
func inOneGroup(t *testing.T, s *Store, jobs ...func() error) []error {
	t.Helper()
	release := hold(t, s)
	errs := make([]error, len(jobs))
	var wg sync.WaitGroup
	for i, job := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = job()
		}()
		waitQueued(t, s, i+1)
	}
	release()
	wg.Wait()
	return errs
}

// openPostingEvery opens a fresh store whose posting rounds come every n entity keys (the
// records of auditRecords have one each).
func openPostingEvery(t *testing.T, n int) *Store {
	t.Helper()
	old := auditPostEvery
	t.Cleanup(func() { auditPostEvery = old })
	auditPostEvery = n
	s, err := Open(context.Background(), t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// postingsOnly checks that, with the watermark past every record, searches by key find
// exactly the records recs: every record has its postings, none is doubled, none is stray.
func postingsOnly(t *testing.T, s *Store, recs []*resources.AuditRecord) {
	t.Helper()
	var posted, newest int64
	if err := s.r.QueryRow(`SELECT (SELECT t FROM audit_posted), (SELECT max(t) FROM audit_events)`).Scan(&posted, &newest); err != nil || posted <= newest {
		t.Fatalf("watermark %d, newest record %d: want every record posted (%v)", posted, newest, err)
	}
	wantSearches(t, s, recs, []string{"t|Patient"}, []string{"a|ben"}, []string{"e|Patient/p7"}, []string{"a|Organization/plan"})
	if o := orphanPostings(t, s); o != 0 {
		t.Errorf("%d postings of no record", o)
	}
}

// TestAudit_RoundAfterReopen: records past the watermark when the store closed are read back
// by the next round.
func TestAudit_RoundAfterReopen(t *testing.T) {
	ctx := context.Background()
	defer func(n int) { auditPostEvery = n }(auditPostEvery)
	auditPostEvery = 100
	dir := t.TempDir()
	recs := auditRecords(260, time.Now().UTC().Truncate(time.Microsecond))
	s, err := Open(ctx, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 150; i += 50 { // a round after 100; 50 left past the watermark
		if err := s.AppendAudit(ctx, recs[i:i+50]); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	if s, err = Open(ctx, dir, Options{}); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.AppendAudit(ctx, recs[150:]); err != nil { // 50 + 110: a round
		t.Fatal(err)
	}
	postingsOnly(t, s, recs)
}

// TestAudit_RoundsSurviveRollbacks: a posting round in a group that is run again (a job beside
// it failed) is run again with it, and the records appended after it in the group are the
// next round's.
func TestAudit_RoundsSurviveRollbacks(t *testing.T) {
	ctx := context.Background()
	s := openPostingEvery(t, 100)
	recs := auditRecords(230, time.Now().UTC().Truncate(time.Microsecond))
	if err := s.AppendAudit(ctx, recs[:60]); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	errs := inOneGroup(t, s,
		func() error { return s.AppendAudit(ctx, recs[60:120]) }, // 120 past the watermark: a round
		func() error {
			return s.submit(ctx, 0, func(w *writer) error {
				if _, err := w.exec(`UPDATE audit_posted SET t = 0`); err != nil {
					return err
				}
				return boom
			})
		},
		func() error { return s.AppendAudit(ctx, recs[120:150]) })
	if errs[0] != nil || !errors.Is(errs[1], boom) || errs[2] != nil {
		t.Fatalf("got %v, want only the second job to fail", errs)
	}
	if err := s.AppendAudit(ctx, recs[150:]); err != nil { // 30 + 80 past the watermark: a round
		t.Fatal(err)
	}
	postingsOnly(t, s, recs)
}

// TestAudit_RoundSizeCountsKeys: a round comes after so many entity keys, not records, so that
// the records of transaction Bundles (one entity per entry) make rounds no larger than reads do.
func TestAudit_RoundSizeCountsKeys(t *testing.T) {
	ctx := context.Background()
	s := openPostingEvery(t, 400)
	recs := auditRecords(5, time.Now().UTC().Truncate(time.Microsecond))
	for i, r := range recs {
		r.Subtype, r.Action, r.Type = "transaction", "E", "Bundle"
		r.Entities = nil
		for j := range 100 {
			r.Entities = append(r.Entities, fmt.Sprintf("Patient/p%d-%d/_history/1", i, j))
		}
	}
	if err := s.AppendAudit(ctx, recs); err != nil {
		t.Fatal(err)
	}
	var posted int64
	if err := s.r.QueryRow(`SELECT t FROM audit_posted`).Scan(&posted); err != nil || posted <= micros(recs[len(recs)-1].Recorded) {
		t.Errorf("watermark %d after five records of 100 entities each, want past them (%v)", posted, err)
	}
	wantSearches(t, s, recs, []string{"e|Patient/p3-7"}, []string{"t|Bundle"})
}

// TestAudit_PurgeAfterRoundInOneGroup: a purge past the watermark in the group of a posting
// round, after it, takes records the round left waiting; the next round must not post them.
func TestAudit_PurgeAfterRoundInOneGroup(t *testing.T) {
	ctx := context.Background()
	s := openPostingEvery(t, 100)
	recs := auditRecords(300, time.Now().UTC().Truncate(time.Microsecond))
	for i, r := range recs[100:150] {
		r.Entities = []string{fmt.Sprintf("Patient/purged-%d", i)}
	}
	if err := s.AppendAudit(ctx, recs[:60]); err != nil {
		t.Fatal(err)
	}
	errs := inOneGroup(t, s,
		func() error { return s.AppendAudit(ctx, recs[60:100]) },  // 100 past the watermark: a round
		func() error { return s.AppendAudit(ctx, recs[100:150]) }, // left waiting by the round
		func() error {
			_, err := s.PurgeAudit(ctx, recs[150].Recorded) // all of them
			return err
		})
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendAudit(ctx, recs[150:]); err != nil { // 150 past the watermark: a round
		t.Fatal(err)
	}
	postingsOnly(t, s, recs[150:])
}
