package sqlitestore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/calaimfhir/calaimfhir/internal/bench"
	"github.com/calaimfhir/calaimfhir/resources"
)

// BenchmarkWALPages counts what the writes of the HTTP benchmark's mix cost the writer's
// commits: WAL frames (one per page a transaction dirtied) per write, in groups of four jobs
// (the mean group size under `calaimfhir bench --mix crud`). Unlike time, the count does not
// depend on what else the machine is doing, so two layouts can be compared on a busy host:
//
//	go test ./internal/sqlitestore -run '^$' -bench WALPages -benchtime 512x
func BenchmarkWALPages(b *testing.B) {
	samples := bench.SampleDocuments(1)
	// member i's documents: the sample member's, renumbered.
	doc := func(typ string, i int) *resources.Resource {
		body := strings.ReplaceAll(string(samples[typ]), "-000000", fmt.Sprintf("-%06d", i))
		var m map[string]any
		if err := json.Unmarshal([]byte(body), &m); err != nil {
			b.Fatal(err)
		}
		enc, err := resources.EncodeResource(m)
		if err != nil {
			b.Fatal(err)
		}
		return &resources.Resource{Type: typ, ID: m["id"].(string), VersionID: 1, LastUpdated: time.Now().UTC(),
			JSON: enc, Keys: resources.ExtractKeysAt(typ, m, "")}
	}
	types := []string{"Patient", "Coverage", "Consent", "ServiceRequest", "Task"}
	const members = 2000
	const group = 4
	for _, op := range []string{"create", "update-task"} {
		b.Run(op, func(b *testing.B) {
			s, other, wal, walFrames := walBench(b)
			ctx := context.Background()
			// A population to write among, so that pages are not all shared.
			for i := range members {
				var ws []*resources.Write
				for _, typ := range types {
					ws = append(ws, &resources.Write{Resource: doc(typ, i)})
				}
				if err := s.Apply(ctx, ws); err != nil {
					b.Fatal(err)
				}
			}
			start := walStart(b, other, walFrames)
			version := map[int]int64{}
			next := members
			b.ResetTimer()
			for k := 0; k < b.N; k += group {
				var writes []*resources.Resource
				for j := 0; j < group; j++ {
					switch op {
					case "create":
						writes = append(writes, doc(types[(k+j)%len(types)], next))
						next++
					case "update-task":
						i := ((k + j) * 7919) % members
						r := doc("Task", i)
						version[i]++
						r.VersionID = version[i] + 1
						writes = append(writes, r)
					}
				}
				release := hold(b, s)
				var wg sync.WaitGroup
				for _, r := range writes {
					wg.Add(1)
					go func() {
						defer wg.Done()
						if err := s.Put(ctx, r); err != nil {
							b.Error(err)
						}
					}()
				}
				waitQueued(b, s, group)
				release()
				wg.Wait()
			}
			b.StopTimer()
			b.ReportMetric(float64(walFrames()-start)/float64(b.N), "wal-pages/write")
			if os.Getenv("WALPAGES_BY_TABLE") != "" {
				logPagesByTable(b, other, wal, s.PageSize())
			}
		})
	}
}

// walBench opens a store for counting WAL frames: no checkpoints but walStart's, a second
// connection (other) to run them and name pages, the WAL's path and its frame count.
func walBench(b *testing.B) (s *Store, other *sql.DB, wal string, frames func() int64) {
	dir := b.TempDir()
	s, err := Open(context.Background(), dir, Options{noCheckpointer: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	if err := s.submit(context.Background(), 0, func(w *writer) error {
		_, err := w.conn.ExecContext(w.ctx, "PRAGMA wal_autocheckpoint = 0")
		return err
	}); err != nil {
		b.Fatal(err)
	}
	if other, err = sql.Open("sqlite", "file:"+filepath.Join(dir, FileName)); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { other.Close() })
	wal = filepath.Join(dir, FileName+"-wal")
	return s, other, wal, func() int64 {
		fi, err := os.Stat(wal)
		if err != nil {
			return 0
		}
		return max(0, (fi.Size()-32)/int64(24+s.PageSize()))
	}
}

// walStart empties the WAL (a full checkpoint) and returns its frame count from there.
func walStart(b *testing.B, other *sql.DB, frames func() int64) int64 {
	var busy, logFrames, done int
	if err := other.QueryRow("PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &logFrames, &done); err != nil || busy != 0 {
		b.Fatalf("checkpoint: busy %d, %v", busy, err)
	}
	return frames()
}

// logPagesByTable logs how many of the WAL's frames belong to each table and index (the
// page numbers in the frames' headers, named through the dbstat table).
func logPagesByTable(b *testing.B, db *sql.DB, wal string, pageSize int) {
	raw, err := os.ReadFile(wal)
	if err != nil {
		b.Fatal(err)
	}
	pages := map[uint32]int{}
	for off := 32; off+24+pageSize <= len(raw); off += 24 + pageSize {
		h := raw[off:]
		pages[uint32(h[0])<<24|uint32(h[1])<<16|uint32(h[2])<<8|uint32(h[3])]++
	}
	rows, err := db.Query("SELECT name, pageno FROM dbstat")
	if err != nil {
		b.Fatal(err)
	}
	defer rows.Close()
	by := map[string]int{}
	for rows.Next() {
		var name string
		var pageno uint32
		if err := rows.Scan(&name, &pageno); err != nil {
			b.Fatal(err)
		}
		by[name] += pages[pageno]
	}
	b.Logf("WAL frames by table or index: %v", by)
}

// BenchmarkWALPagesAudit is BenchmarkWALPages for the audit trail: WAL frames per record,
// appended in the server's batches of 256 from 16 callers reading 2,000 patients, so that a
// layout's bytes per record can be compared on a busy host (with WALPAGES_BY_TABLE=1, by table):
//
//	go test ./internal/sqlitestore -run '^$' -bench WALPagesAudit -benchtime 51200x
func BenchmarkWALPagesAudit(b *testing.B) {
	s, other, wal, walFrames := walBench(b)
	ctx := context.Background()
	at := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	record := func(i int) *resources.AuditRecord {
		t := at.Add(time.Duration(i) * 50 * time.Microsecond) // 20,000 requests/s
		caller := (i * 7) % 16
		return &resources.AuditRecord{ID: fmt.Sprintf("%016x%016x", t.UnixMicro(), uint64(i)*0x9e3779b97f4a7c15), Recorded: t,
			Start: t.Add(-400 * time.Microsecond), Subtype: "read", Action: "R", Status: 200, Method: "GET",
			Subject: fmt.Sprintf("cbo-%02d-worker", caller), ClientID: fmt.Sprintf("cbo-%02d-app", caller),
			Org: fmt.Sprintf("Organization/bench-cbo-%02d", caller), Role: "cbo", Address: "10.1.2.3",
			RequestID: fmt.Sprintf("%016x", uint64(i)*0xbf58476d1ce4e5b9), Type: "Patient",
			Entities: []string{fmt.Sprintf("Patient/bench-member-%06d", (i*7919)%2000)}}
	}
	const batch = 256
	var next int
	appendBatch := func() {
		recs := make([]*resources.AuditRecord, batch)
		for j := range recs {
			recs[j] = record(next)
			next++
		}
		if err := s.AppendAudit(ctx, recs); err != nil {
			b.Fatal(err)
		}
	}
	for range 64 { // a trail to append to
		appendBatch()
	}
	start := walStart(b, other, walFrames)
	b.ResetTimer()
	for k := 0; k < b.N; k += batch {
		appendBatch()
	}
	b.StopTimer()
	b.ReportMetric(float64(walFrames()-start)/float64(b.N), "wal-pages/record")
	if os.Getenv("WALPAGES_BY_TABLE") != "" {
		logPagesByTable(b, other, wal, s.PageSize())
	}
}
