package mongostore_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/calaimfhir/calaimfhir/internal/ferrettest"
	"github.com/calaimfhir/calaimfhir/internal/mongostore"
	"github.com/calaimfhir/calaimfhir/resources"
)

// Benchmarks on an in-process FerretDB (SQLite backend) behind the ferrettest relay:
//
//	go test -run '^$' -bench . -benchtime 2000x ./internal/mongostore/

var benchClock atomic.Int64

func benchTask(id, owner, status string) *resources.Resource {
	lu := time.UnixMicro(max(time.Now().UnixMicro(), benchClock.Add(1))).UTC()
	benchClock.Store(lu.UnixMicro())
	doc := map[string]any{
		"resourceType": "Task",
		"id":           id,
		"meta":         map[string]any{"versionId": "1", "lastUpdated": lu.Format(time.RFC3339Nano)},
		"status":       status,
		"intent":       "order",
		"priority":     "routine",
		"code":         map[string]any{"coding": []any{map[string]any{"system": "http://hl7.org/fhir/CodeSystem/task-code", "code": "fulfill"}}},
		"for":          map[string]any{"reference": "Patient/p-" + id},
		"owner":        map[string]any{"reference": owner},
		"requester":    map[string]any{"reference": "Organization/plan-1"},
		"identifier":   []any{map[string]any{"system": "urn:bench", "value": id}},
		"authoredOn":   "2026-11-23T10:00:00Z",
		"description":  "Enhanced Care Management referral follow-up",
	}
	b, err := json.Marshal(doc)
	if err != nil {
		panic(err)
	}
	return &resources.Resource{Type: "Task", ID: id, VersionID: 1, LastUpdated: lu, JSON: b, Keys: resources.ExtractKeys("Task", doc)}
}

func benchStore(b *testing.B) *mongostore.Store {
	b.Helper()
	srv := ferrettest.Start(b)
	s, err := mongostore.Open(context.Background(), srv.URI("bench"), mongostore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

func load(b *testing.B, s *mongostore.Store, n, owners int) {
	b.Helper()
	ctx := context.Background()
	for i := 0; i < n; i++ {
		r := benchTask(fmt.Sprintf("t%06d", i), fmt.Sprintf("Organization/cbo-%d", i%owners), "requested")
		if err := s.Put(ctx, r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCreateTask(b *testing.B) {
	s := benchStore(b)
	ctx := context.Background()
	i := 0
	for b.Loop() {
		if err := s.Put(ctx, benchTask(fmt.Sprintf("c%07d", i), "Organization/cbo-1", "requested")); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkReadTask(b *testing.B) {
	const n = 1000
	s := benchStore(b)
	load(b, s, n, 10)
	ctx := context.Background()
	b.Run("serial", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.Read(ctx, "Task", fmt.Sprintf("t%06d", rand.IntN(n))); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel4", func(b *testing.B) {
		b.SetParallelism(2) // 2 × GOMAXPROCS(2) = 4 goroutines
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := s.Read(ctx, "Task", fmt.Sprintf("t%06d", rand.IntN(n))); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// BenchmarkSearchTaskByOwner: 2,000 Tasks over 10 owners (200 each), first page of 20 for one
// owner, with and without a total.
func BenchmarkSearchTaskByOwner(b *testing.B) {
	s := benchStore(b)
	load(b, s, 2000, 10)
	ctx := context.Background()
	for _, total := range []bool{false, true} {
		b.Run(fmt.Sprintf("total=%v", total), func(b *testing.B) {
			for b.Loop() {
				q := &resources.Query{Type: "Task", Count: 20, Total: total, Clauses: []resources.Clause{
					{AnyKey: []string{resources.RefKey("owner", "Organization", fmt.Sprintf("cbo-%d", rand.IntN(10)))}}}}
				page, err := s.Search(ctx, q)
				if err != nil {
					b.Fatal(err)
				}
				if len(page.Resources) != 20 || page.Next == nil {
					b.Fatalf("page of %d", len(page.Resources))
				}
			}
		})
	}
}

func benchPatient(id string, v int64) *resources.Resource {
	lu := time.UnixMicro(max(time.Now().UnixMicro(), benchClock.Add(1))).UTC()
	benchClock.Store(lu.UnixMicro())
	doc := map[string]any{
		"resourceType": "Patient",
		"id":           id,
		"meta":         map[string]any{"versionId": fmt.Sprint(v), "lastUpdated": lu.Format(time.RFC3339Nano)},
		"identifier":   []any{map[string]any{"system": "urn:cin", "value": id}},
		"name":         []any{map[string]any{"family": "Doe", "given": []any{"Jan"}}},
		"birthDate":    "1980-02-03",
	}
	b, err := json.Marshal(doc)
	if err != nil {
		panic(err)
	}
	return &resources.Resource{Type: "Patient", ID: id, VersionID: v, LastUpdated: lu, JSON: b, Keys: resources.ExtractKeys("Patient", doc)}
}

// sixResources is a referral-sized transaction: three Patients and three Tasks, created (v=1)
// or updated (v>1).
func sixResources(n int, v int64) []*resources.Resource {
	var rs []*resources.Resource
	for k := 0; k < 3; k++ {
		rs = append(rs, benchPatient(fmt.Sprintf("p%06d-%d", n, k), v))
		t := benchTask(fmt.Sprintf("t%06d-%d", n, k), "Organization/cbo-1", "requested")
		t.VersionID = v
		rs = append(rs, t)
	}
	return rs
}

// BenchmarkSixResources compares one Apply of six resources with six Puts, creating and
// updating, on a store that holds 1,000 Tasks already:
//
//	go test -run '^$' -bench SixResources -benchtime 100x ./internal/mongostore/
func BenchmarkSixResources(b *testing.B) {
	for _, mode := range []string{"create", "update"} {
		for _, how := range []string{"6 Puts", "Apply"} {
			b.Run(mode+"/"+how, func(b *testing.B) {
				s := benchStore(b)
				load(b, s, 1000, 10)
				ctx := context.Background()
				n := 0
				for b.Loop() {
					rs := sixResources(n, 1)
					if mode == "update" {
						b.StopTimer()
						for _, r := range rs {
							if err := s.Put(ctx, r); err != nil {
								b.Fatal(err)
							}
						}
						rs = sixResources(n, 2)
						b.StartTimer()
					}
					n++
					if how == "Apply" {
						ws := make([]*resources.Write, len(rs))
						for i, r := range rs {
							ws[i] = &resources.Write{Resource: r}
						}
						if err := s.Apply(ctx, ws); err != nil {
							b.Fatal(err)
						}
						continue
					}
					for _, r := range rs {
						if err := s.Put(ctx, r); err != nil {
							b.Fatal(err)
						}
					}
				}
			})
		}
	}
}
