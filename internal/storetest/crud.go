package storetest

import (
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/calaimfhir/calaimfhir/resources"
)

// clock hands out strictly increasing microsecond timestamps, as the service does.
var clock struct {
	sync.Mutex
	last time.Time
}

func now() time.Time {
	clock.Lock()
	defer clock.Unlock()
	t := time.Now().UTC().Truncate(time.Microsecond)
	if !t.After(clock.last) {
		t = clock.last.Add(time.Microsecond)
	}
	clock.last = t
	return t
}

// task builds version v of a Task with its JSON and keys, the way the service would.
func task(id string, v int64, owner, status string) *resources.Resource {
	lu := now()
	doc := map[string]any{
		"resourceType": "Task",
		"id":           id,
		"meta":         map[string]any{"versionId": fmt.Sprint(v), "lastUpdated": lu.Format(time.RFC3339Nano)},
		"status":       status,
		"intent":       "order",
		"owner":        map[string]any{"reference": owner},
		"identifier":   []any{map[string]any{"system": "urn:test", "value": "t-" + id}},
	}
	return build("Task", id, v, lu, doc)
}

func patient(id string, v int64, identifier string) *resources.Resource {
	lu := now()
	doc := map[string]any{
		"resourceType": "Patient",
		"id":           id,
		"meta":         map[string]any{"versionId": fmt.Sprint(v), "lastUpdated": lu.Format(time.RFC3339Nano)},
		"identifier":   []any{map[string]any{"system": "urn:cin", "value": identifier}},
	}
	return build("Patient", id, v, lu, doc)
}

func build(typ, id string, v int64, lu time.Time, doc map[string]any) *resources.Resource {
	b, err := json.Marshal(doc)
	if err != nil {
		panic(err)
	}
	return &resources.Resource{Type: typ, ID: id, VersionID: v, LastUpdated: lu, JSON: b, Keys: resources.ExtractKeys(typ, doc)}
}

func tombstone(typ, id string, v int64) *resources.Resource {
	return &resources.Resource{Type: typ, ID: id, VersionID: v, LastUpdated: now(), Deleted: true}
}

func mustPut(t testing.TB, s resources.Store, r *resources.Resource) {
	t.Helper()
	if err := s.Put(ctx(t), r); err != nil {
		t.Fatalf("Put %s/%s v%d: %v", r.Type, r.ID, r.VersionID, err)
	}
}

func wantKind(t testing.TB, err error, kind resources.Kind) {
	t.Helper()
	if !resources.IsKind(err, kind) {
		t.Fatalf("got error %v (kind %d), want kind %d", err, resources.KindOf(err), kind)
	}
}

func sameVersion(t testing.TB, got, want *resources.Resource) {
	t.Helper()
	if got == nil {
		t.Fatalf("got nil resource, want %s/%s v%d", want.Type, want.ID, want.VersionID)
	}
	if got.Type != want.Type || got.ID != want.ID || got.VersionID != want.VersionID || got.Deleted != want.Deleted {
		t.Fatalf("got %s/%s v%d deleted=%v, want %s/%s v%d deleted=%v", got.Type, got.ID, got.VersionID, got.Deleted, want.Type, want.ID, want.VersionID, want.Deleted)
	}
	if !got.LastUpdated.Equal(want.LastUpdated) {
		t.Fatalf("lastUpdated: got %v, want %v", got.LastUpdated, want.LastUpdated)
	}
	if string(got.JSON) != string(want.JSON) {
		t.Fatalf("JSON differs:\n got %s\nwant %s", got.JSON, want.JSON)
	}
}

func init() {
	register("PutThenRead_ReturnsStoredBytes", func(t *testing.T, h Harness) {
		s, _ := h.OpenFresh(t)
		r := task("t1", 1, "Organization/cbo-a", "requested")
		mustPut(t, s, r)
		got, err := s.Read(ctx(t), "Task", "t1")
		if err != nil {
			t.Fatal(err)
		}
		sameVersion(t, got, r)
	})

	register("Read_Unknown_ReturnsNotFound", func(t *testing.T, h Harness) {
		s, _ := h.OpenFresh(t)
		_, err := s.Read(ctx(t), "Task", "nope")
		wantKind(t, err, resources.KindNotFound)
		_, err = s.VRead(ctx(t), "Task", "nope", 1)
		wantKind(t, err, resources.KindNotFound)
	})

	register("TypesAreSeparate", func(t *testing.T, h Harness) {
		s, _ := h.OpenFresh(t)
		mustPut(t, s, task("same", 1, "Organization/a", "requested"))
		_, err := s.Read(ctx(t), "Patient", "same")
		wantKind(t, err, resources.KindNotFound)
		p := patient("same", 1, "12345678A")
		mustPut(t, s, p)
		got, err := s.Read(ctx(t), "Patient", "same")
		if err != nil {
			t.Fatal(err)
		}
		sameVersion(t, got, p)
	})

	register("Update_KeepsEveryVersion", func(t *testing.T, h Harness) {
		s, _ := h.OpenFresh(t)
		v1 := task("t1", 1, "Organization/a", "requested")
		v2 := task("t1", 2, "Organization/a", "accepted")
		v3 := task("t1", 3, "Organization/a", "completed")
		for _, r := range []*resources.Resource{v1, v2, v3} {
			mustPut(t, s, r)
		}
		got, err := s.Read(ctx(t), "Task", "t1")
		if err != nil {
			t.Fatal(err)
		}
		sameVersion(t, got, v3)
		for _, want := range []*resources.Resource{v1, v2, v3} {
			got, err := s.VRead(ctx(t), "Task", "t1", want.VersionID)
			if err != nil {
				t.Fatalf("VRead v%d: %v", want.VersionID, err)
			}
			sameVersion(t, got, want)
		}
		_, err = s.VRead(ctx(t), "Task", "t1", 4)
		wantKind(t, err, resources.KindNotFound)
	})

	register("Put_WrongVersion_ReturnsConflict", func(t *testing.T, h Harness) {
		s, _ := h.OpenFresh(t)
		mustPut(t, s, task("t1", 1, "Organization/a", "requested"))
		wantKind(t, s.Put(ctx(t), task("t1", 1, "Organization/a", "accepted")), resources.KindConflict)
		wantKind(t, s.Put(ctx(t), task("t1", 3, "Organization/a", "accepted")), resources.KindConflict)
		wantKind(t, s.Put(ctx(t), task("t2", 2, "Organization/a", "accepted")), resources.KindConflict)
		got, err := s.Read(ctx(t), "Task", "t1")
		if err != nil || got.VersionID != 1 {
			t.Fatalf("after conflicts: got %v, %v; want version 1 untouched", got, err)
		}
		page, err := s.History(ctx(t), &resources.HistoryQuery{Type: "Task", ID: "t1", Count: 10})
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Resources) != 1 {
			t.Fatalf("history has %d entries after rejected writes, want 1", len(page.Resources))
		}
		_, err = s.Read(ctx(t), "Task", "t2")
		wantKind(t, err, resources.KindNotFound)
	})

	register("ConcurrentPuts_ExactlyOneWinsEachVersion", func(t *testing.T, h Harness) {
		s, _ := h.OpenFresh(t)
		mustPut(t, s, task("t1", 1, "Organization/a", "requested"))
		var wins, conflicts atomic.Int32
		var wg sync.WaitGroup
		for i := 0; i < 20; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := s.Put(ctx(t), task("t1", 2, "Organization/a", "accepted"))
				switch {
				case err == nil:
					wins.Add(1)
				case resources.IsKind(err, resources.KindConflict):
					conflicts.Add(1)
				default:
					t.Errorf("unexpected error: %v", err)
				}
			}()
		}
		wg.Wait()
		if wins.Load() != 1 || conflicts.Load() != 19 {
			t.Fatalf("wins=%d conflicts=%d, want 1 and 19", wins.Load(), conflicts.Load())
		}
		page, err := s.History(ctx(t), &resources.HistoryQuery{Type: "Task", ID: "t1", Count: 50})
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Resources) != 2 {
			t.Fatalf("history has %d versions, want 2", len(page.Resources))
		}
	})

	register("Delete_WritesTombstone_ReadReturnsGone", func(t *testing.T, h Harness) {
		s, _ := h.OpenFresh(t)
		v1 := task("t1", 1, "Organization/a", "requested")
		mustPut(t, s, v1)
		del := tombstone("Task", "t1", 2)
		mustPut(t, s, del)
		got, err := s.Read(ctx(t), "Task", "t1")
		wantKind(t, err, resources.KindGone)
		if got == nil || !got.Deleted || got.VersionID != 2 || !got.LastUpdated.Equal(del.LastUpdated) {
			t.Fatalf("tombstone: got %+v, want deleted version 2", got)
		}
		_, err = s.VRead(ctx(t), "Task", "t1", 2)
		wantKind(t, err, resources.KindGone)
		old, err := s.VRead(ctx(t), "Task", "t1", 1)
		if err != nil {
			t.Fatal(err)
		}
		sameVersion(t, old, v1)
		page, err := s.Search(ctx(t), &resources.Query{Type: "Task", Count: 10, Total: true})
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Resources) != 0 || page.Total != 0 {
			t.Fatalf("search after delete: %d resources, total %d; want none", len(page.Resources), page.Total)
		}
		// Deleting again is a conflict unless the caller names the current version.
		wantKind(t, s.Put(ctx(t), tombstone("Task", "t1", 2)), resources.KindConflict)
		// A new version brings it back.
		v3 := task("t1", 3, "Organization/a", "requested")
		mustPut(t, s, v3)
		got, err = s.Read(ctx(t), "Task", "t1")
		if err != nil {
			t.Fatal(err)
		}
		sameVersion(t, got, v3)
	})

	register("CloseAndReopen_KeepsData", func(t *testing.T, h Harness) {
		loc := h.New(t)
		s := h.Open(t, loc)
		v1 := task("t1", 1, "Organization/a", "requested")
		v2 := task("t1", 2, "Organization/a", "accepted")
		mustPut(t, s, v1)
		mustPut(t, s, v2)
		mustPut(t, s, patient("p1", 1, "12345678A"))
		mustPut(t, s, tombstone("Patient", "p1", 2))
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s = h.Open(t, loc)
		defer s.Close()
		got, err := s.Read(ctx(t), "Task", "t1")
		if err != nil {
			t.Fatal(err)
		}
		sameVersion(t, got, v2)
		old, err := s.VRead(ctx(t), "Task", "t1", 1)
		if err != nil {
			t.Fatal(err)
		}
		sameVersion(t, old, v1)
		_, err = s.Read(ctx(t), "Patient", "p1")
		wantKind(t, err, resources.KindGone)
		page, err := s.Search(ctx(t), &resources.Query{Type: "Task", Count: 10, Clauses: []resources.Clause{
			{AnyKey: []string{resources.RefKey("owner", "Organization", "a")}}}})
		if err != nil || len(page.Resources) != 1 {
			t.Fatalf("search after reopen: %v, %v", page, err)
		}
	})

	register("Outage_ReturnsUnavailable_ThenRecovers", func(t *testing.T, h Harness) {
		s, loc := h.OpenFresh(t)
		mustPut(t, s, task("t1", 1, "Organization/a", "requested"))
		restore := h.Outage(t, loc)
		restored := false
		defer func() {
			if !restored {
				restore()
			}
		}()
		// Reads may go on (the embedded store's readers are not blocked by a writer lock) but
		// must then be right; writes and the readiness probe must fail as unavailable.
		if got, err := s.Read(ctx(t), "Task", "t1"); err != nil {
			wantKind(t, err, resources.KindUnavailable)
		} else if got.VersionID != 1 {
			t.Fatalf("read during outage returned version %d", got.VersionID)
		}
		wantKind(t, s.Ping(ctx(t)), resources.KindUnavailable)
		var err error
		wantKind(t, s.Put(ctx(t), task("t2", 1, "Organization/a", "requested")), resources.KindUnavailable)
		restore()
		restored = true
		deadline := time.Now().Add(30 * time.Second)
		for {
			err = s.Ping(ctx(t))
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("store did not recover: %v", err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if _, err := s.Read(ctx(t), "Task", "t1"); err != nil {
			t.Fatalf("read after recovery: %v", err)
		}
		// The write attempted during the outage did not happen.
		_, err = s.Read(ctx(t), "Task", "t2")
		wantKind(t, err, resources.KindNotFound)
	})
}
