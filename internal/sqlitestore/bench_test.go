package sqlitestore_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/calaimfhir/calaimfhir/internal/bench"
	"github.com/calaimfhir/calaimfhir/internal/fhirtest"
	"github.com/calaimfhir/calaimfhir/internal/sqlitestore"
	"github.com/calaimfhir/calaimfhir/resources"
)

func benchTask(i int) *resources.Resource {
	doc := map[string]any{
		"resourceType": "Task", "status": "requested", "intent": "order",
		"owner":      map[string]any{"reference": fmt.Sprintf("Organization/cbo-%d", i%20)},
		"for":        map[string]any{"reference": fmt.Sprintf("Patient/p-%d", i%500)},
		"identifier": []any{map[string]any{"system": "urn:referral", "value": fmt.Sprint(i)}},
	}
	body, _ := resources.EncodeResource(doc)
	return &resources.Resource{Type: "Task", ID: fmt.Sprintf("t%08d", i), VersionID: 1,
		LastUpdated: time.Now().UTC(), JSON: body, Keys: resources.ExtractKeys("Task", doc)}
}

// Store-level costs, without HTTP or validation: go test ./internal/sqlitestore -bench .
func BenchmarkPut(b *testing.B) {
	s, _ := fhirtest.SQLite.OpenFresh(b)
	ctx := context.Background()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if err := s.Put(ctx, benchTask(i)); err != nil {
			b.Fatal(err)
		}
	}
}

// The parallel benchmarks take their resources from pools built once, so that what they time
// is the store (and the goroutines' contention for its writer), not building test documents.
const poolSize = 2048

var (
	taskPool     []*resources.Resource
	referralPool [][]*resources.Resource
	poolOnce     sync.Once
)

func buildPools() {
	for i := range poolSize {
		taskPool = append(taskPool, benchTask(i))
	}
	// A referral as an EHR pushes it: the member's Patient and Coverage, the Consent, the
	// ServiceRequest and its Task, with the keys the service would extract from each.
	samples := bench.SampleDocuments(1)
	for i := range poolSize {
		var ref []*resources.Resource
		for _, typ := range []string{"Patient", "Coverage", "Consent", "ServiceRequest", "Task"} {
			// Member 0's ids and identifiers end in -000000: renumber them so that every referral
			// has its own ids, identifiers and references.
			body := strings.ReplaceAll(string(samples[typ]), "-000000", fmt.Sprintf("-%06d", i))
			var doc map[string]any
			if err := json.Unmarshal([]byte(body), &doc); err != nil {
				panic(err)
			}
			enc, err := resources.EncodeResource(doc)
			if err != nil {
				panic(err)
			}
			ref = append(ref, &resources.Resource{Type: typ, ID: doc["id"].(string), VersionID: 1,
				JSON: enc, Keys: resources.ExtractKeysAt(typ, doc, "")})
		}
		referralPool = append(referralPool, ref)
	}
}

func openBench(b *testing.B) *sqlitestore.Store {
	poolOnce.Do(buildPools)
	s, err := sqlitestore.Open(context.Background(), b.TempDir(), sqlitestore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// BenchmarkPutParallel: concurrent creates of Tasks, one Put each. Run with -cpu 1,2,16 for
// 1, 2 and 16 writing goroutines (RunParallel starts GOMAXPROCS of them).
func BenchmarkPutParallel(b *testing.B) {
	s := openBench(b)
	ctx := context.Background()
	var n atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := int(n.Add(1))
			t := *taskPool[i%poolSize]
			t.ID = fmt.Sprintf("t%08d", i)
			t.LastUpdated = time.Now().UTC()
			if err := s.Put(ctx, &t); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "resources/s")
	reportGroups(b, s)
}

// BenchmarkApplyReferralParallel: concurrent 5-resource transactions (Patient, Coverage,
// Consent, ServiceRequest, Task), as a referral push stores them. Run with -cpu 1,2,16.
func BenchmarkApplyReferralParallel(b *testing.B) {
	s := openBench(b)
	ctx := context.Background()
	var n atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := int(n.Add(1))
			now := time.Now().UTC()
			var writes []*resources.Write
			for _, tmpl := range referralPool[i%poolSize] {
				r := *tmpl
				r.ID = fmt.Sprintf("%s-%d", r.ID, i)
				r.LastUpdated = now
				writes = append(writes, &resources.Write{Resource: &r})
			}
			if err := s.Apply(ctx, writes); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(5*b.N)/b.Elapsed().Seconds(), "resources/s")
	reportGroups(b, s)
}

// BenchmarkUpdateParallel: concurrent updates (version 2, 3, ...) of 256 existing Tasks, each
// goroutine its own Tasks, as CBOs move their Tasks through the workflow.
func BenchmarkUpdateParallel(b *testing.B) {
	s := openBench(b)
	ctx := context.Background()
	const tasks = 256
	versions := make([]int64, tasks)
	for i := range tasks {
		t := *taskPool[i]
		t.LastUpdated = time.Now().UTC()
		if err := s.Put(ctx, &t); err != nil {
			b.Fatal(err)
		}
		versions[i] = 1
	}
	var worker atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		w := int(worker.Add(1)) - 1
		// Worker w owns Tasks w, w+64, w+128 and w+192, so no two of up to 64 goroutines
		// update the same Task.
		for k := 0; pb.Next(); k++ {
			i := (w%64 + 64*k) % tasks
			t := *taskPool[i]
			t.VersionID = versions[i] + 1
			t.LastUpdated = time.Now().UTC()
			if err := s.Put(ctx, &t); err != nil {
				b.Error(err)
				return
			}
			versions[i]++
		}
	})
	reportGroups(b, s)
}

// reportGroups reports the mean number of callers' writes per SQLite transaction (group
// commit). s is an any so that the benchmarks also build against a store without WriteStats.
func reportGroups(b *testing.B, s any) {
	if ws, ok := s.(interface{ WriteStats() sqlitestore.WriteStats }); ok {
		if st := ws.WriteStats(); st.Groups > 0 {
			b.ReportMetric(float64(st.Jobs)/float64(st.Groups), "writes/txn")
		}
	}
}

func BenchmarkSearchOwnerStatus(b *testing.B) {
	s, _ := fhirtest.SQLite.OpenFresh(b)
	ctx := context.Background()
	for i := 0; i < 5000; i++ {
		if err := s.Put(ctx, benchTask(i)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		q := &resources.Query{Type: "Task", Count: 20, Total: true, Clauses: []resources.Clause{
			{AnyKey: []string{resources.RefKey("owner", "Organization", fmt.Sprintf("cbo-%d", i%20))}},
			{AnyKey: []string{resources.TokenCodeKey("status", "requested")}},
		}}
		if _, err := s.Search(ctx, q); err != nil {
			b.Fatal(err)
		}
	}
}
