package resources_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/calaimfhir/calaimfhir/internal/sqlitestore"
	"github.com/calaimfhir/calaimfhir/resources"
)

// BenchmarkTaskReferenceCheck is the reference check of a Task update by a CBO with 5,000
// referrals (checkReferences: the Task's focus ServiceRequest and its Patient must exist and
// be visible to the CBO), as in `calaimfhir bench --members 50000 --mix task-update=1`.
// In sets=extended each check follows a first write of a Task by the CBO, which extends the
// CBO's access sets (ExtendAccessForTest), so that whatever the cache derives from them for
// the CBO's ServiceRequest and Patient visibility is derived again; sets=unchanged is the
// same check with nothing written in between.
//
//	go test ./resources -run '^$' -bench TaskReferenceCheck -count 6
func BenchmarkTaskReferenceCheck(b *testing.B) {
	w := referralWorld(b)
	admin := resources.AsSystem(context.Background())
	for _, extend := range []bool{true, false} {
		name := "sets=unchanged"
		if extend {
			name = "sets=extended"
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				n := i % len(w.tasks)
				i++
				if extend {
					w.svc.ExtendAccessForTest(admin, w.tasks[n])
				}
				if err := w.svc.CheckReferencesForTest(as(resources.RoleCBO, "cbo-a"), "Task", w.docs[n]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// benchReferrals is the size of referralWorld: the referrals of one CBO at 50,000 members
// in `calaimfhir bench` (ten CBOs).
const benchReferrals = 5000

type benchWorld struct {
	svc   *resources.Service
	tasks []*resources.Resource // the stored Tasks
	docs  []map[string]any      // and their content
}

var (
	benchOnce  sync.Once
	benchW     *benchWorld
	benchErr   error
	benchClose func()
)

// referralWorld is one embedded store with benchReferrals referrals from prov-1 to cbo-a
// (a Patient, a ServiceRequest and a Task owned by cbo-a each), written once per process:
// loading it takes longer than a benchmark run.
func referralWorld(b *testing.B) *benchWorld {
	b.Helper()
	benchOnce.Do(func() { benchW, benchErr = loadReferralWorld() })
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return benchW
}

func loadReferralWorld() (*benchWorld, error) {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "calaimfhir-bench-")
	if err != nil {
		return nil, err
	}
	store, err := sqlitestore.Open(ctx, dir, sqlitestore.Options{})
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	benchClose = func() { store.Close(); os.RemoveAll(dir) }
	svc := newService(nil, store, time.Hour)
	admin := resources.AsSystem(ctx)
	for _, org := range []string{"prov-1", "plan-1", "cbo-a"} {
		if _, _, err := svc.Update(admin, "Organization", org, []byte(`{"resourceType":"Organization","id":"`+org+`","name":"`+org+`"}`), 0); err != nil {
			return nil, err
		}
	}
	const perBundle = 100
	for start := 0; start < benchReferrals; start += perBundle {
		var entries []string
		put := func(typ, id, body string) {
			entries = append(entries, fmt.Sprintf(`{"resource":{"resourceType":%q,"id":%q,%s},"request":{"method":"PUT","url":"%s/%s"}}`, typ, id, body, typ, id))
		}
		for n := start; n < start+perBundle && n < benchReferrals; n++ {
			p := fmt.Sprint("p", n)
			put("Patient", p, `"name":[{"family":"m`+p+`"}]`)
			put("ServiceRequest", "sr-"+p, `"status":"active","intent":"order","subject":{"reference":"Patient/`+p+`"},"requester":{"reference":"Organization/prov-1"}`)
			put("Task", "task-"+p, taskBody(p, "prov-1", "cbo-a"))
		}
		body := `{"resourceType":"Bundle","type":"transaction","entry":[` + strings.Join(entries, ",") + `]}`
		if _, err := svc.ProcessBundle(as(resources.RoleProvider, "prov-1"), []byte(body), resources.BundleOptions{}); err != nil {
			return nil, err
		}
	}
	w := &benchWorld{svc: svc}
	for n := range benchReferrals {
		r, err := store.Read(ctx, "Task", fmt.Sprint("task-p", n))
		if err != nil {
			return nil, err
		}
		var doc map[string]any
		if err := json.Unmarshal(r.JSON, &doc); err != nil {
			return nil, err
		}
		w.tasks, w.docs = append(w.tasks, r), append(w.docs, doc)
	}
	return w, nil
}

func TestMain(m *testing.M) {
	code := m.Run()
	if benchClose != nil {
		benchClose()
	}
	os.Exit(code)
}
