package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/calaimfhir/calaimfhir/resources"
)

// Tests of group commit (writer.go) on the real store: several callers' writes in one
// transaction must each keep the semantics of a transaction of their own.

func openTest(t *testing.T) *Store {
	t.Helper()
	s, err := Open(context.Background(), t.TempDir(), Options{BusyTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func testTask(id string, v int64, owner, ident string) *resources.Resource {
	doc := map[string]any{
		"resourceType": "Task", "id": id, "status": "requested", "intent": "order",
		"owner":      map[string]any{"reference": "Organization/" + owner},
		"identifier": []any{map[string]any{"system": "urn:test", "value": ident}},
		"authoredOn": "2026-11-23T10:00:00Z",
		"meta":       map[string]any{"versionId": fmt.Sprint(v)},
	}
	body, err := resources.EncodeResource(doc)
	if err != nil {
		panic(err)
	}
	return &resources.Resource{Type: "Task", ID: id, VersionID: v, LastUpdated: time.Now().UTC().Truncate(time.Microsecond),
		JSON: body, Keys: resources.ExtractKeys("Task", doc)}
}

func byIdentifier(ident string) *resources.Query {
	return &resources.Query{Type: "Task", Count: 10, Clauses: []resources.Clause{
		{AnyKey: []string{resources.TokenCodeKey("identifier", ident)}}}}
}

func byOwner(owner string) *resources.Query {
	return &resources.Query{Type: "Task", Count: 10, Clauses: []resources.Clause{
		{AnyKey: []string{resources.RefKey("owner", "Organization", owner)}}}}
}

func count(t *testing.T, s *Store, q *resources.Query) int {
	t.Helper()
	page, err := s.Search(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	return len(page.Resources)
}

// hold blocks the writer inside a job until the returned release is called, so that the
// writes queued meanwhile are taken together: they join the holding job's group once it
// returns (writer.go). release returns when that group has committed.
func hold(t testing.TB, s *Store) (release func()) {
	t.Helper()
	started, gate := make(chan struct{}), make(chan struct{})
	var once sync.Once
	done := make(chan error, 1)
	go func() {
		done <- s.submit(context.Background(), 0, func(*writer) error {
			once.Do(func() { close(started) }) // a group run again with savepoints runs it again
			<-gate
			return nil
		})
	}()
	<-started
	return func() {
		close(gate)
		if err := <-done; err != nil {
			t.Errorf("holding job: %v", err)
		}
	}
}

// waitQueued waits until n jobs are queued behind the writer.
func waitQueued(t testing.TB, s *Store, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(s.queue) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d jobs queued, want %d", len(s.queue), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func wantKind(t *testing.T, what string, err error, kind resources.Kind) {
	t.Helper()
	if !resources.IsKind(err, kind) {
		t.Errorf("%s: got %v (kind %d), want kind %d", what, err, resources.KindOf(err), kind)
	}
}

// TestGroup_FailingWritesDoNotFailNeighbours queues, behind a held writer, writes that
// succeed and writes that fail for each reason a write can fail, so that they run in one
// group; each must get its own result, and the failed ones must leave no trace.
func TestGroup_FailingWritesDoNotFailNeighbours(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	if err := s.Put(ctx, testTask("existing", 1, "org-x", "dup")); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, testTask("upd", 1, "org-old", "upd")); err != nil {
		t.Fatal(err)
	}
	before := s.WriteStats()

	release := hold(t, s)
	type call struct {
		name  string
		run   func() error
		fails bool
		want  resources.Kind
	}
	var created *resources.Resource
	calls := []call{
		{"put new", func() error { return s.Put(ctx, testTask("a", 1, "org-a", "a")) }, false, 0},
		{"put stale version", func() error { return s.Put(ctx, testTask("nope", 3, "org-b", "nope")) }, true, resources.KindConflict},
		{"update", func() error { return s.Put(ctx, testTask("upd", 2, "org-new", "upd")) }, false, 0},
		{"apply with a conflict in its second write", func() error {
			return s.Apply(ctx, []*resources.Write{{Resource: testTask("c1", 1, "org-c", "c1")}, {Resource: testTask("existing", 1, "org-c", "c2")}})
		}, true, resources.KindConflict},
		{"create unless one exists (one does)", func() error {
			var err error
			created, err = s.CreateIfNoneExist(ctx, testTask("d", 1, "org-d", "dup"), byIdentifier("dup"))
			return err
		}, false, 0},
		{"apply with a conditional create that matches", func() error {
			return s.Apply(ctx, []*resources.Write{{Resource: testTask("e1", 1, "org-e", "e1")},
				{Resource: testTask("e2", 1, "org-e", "e2"), IfNoneMatch: byIdentifier("dup")}})
		}, true, resources.KindConflict},
		{"panicking write", func() error {
			task := testTask("p", 1, "org-p", "p")
			p, err := prepRow(task)
			if err != nil {
				return err
			}
			return s.submit(ctx, 0, func(w *writer) error {
				if err := w.put(task, p); err != nil {
					return err
				}
				panic("a bug")
			})
		}, true, resources.KindInternal},
		{"put new after the failures", func() error { return s.Put(ctx, testTask("f", 1, "org-f", "f")) }, false, 0},
	}
	errs := make([]error, len(calls))
	var wg sync.WaitGroup
	for i, c := range calls {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = c.run() }()
		waitQueued(t, s, i+1) // keep the queue (and so the group) in this order
	}
	release()
	wg.Wait()

	for i, c := range calls {
		if !c.fails {
			if errs[i] != nil {
				t.Errorf("%s: %v", c.name, errs[i])
			}
		} else {
			wantKind(t, c.name, errs[i], c.want)
		}
	}
	var ae *resources.ApplyError
	if !errors.As(errs[3], &ae) || ae.Index != 1 {
		t.Errorf("apply: got %v, want the error of write 1", errs[3])
	}
	if created == nil || created.ID != "existing" {
		t.Errorf("CreateIfNoneExist returned %v, want the existing Task", created)
	}
	after := s.WriteStats()
	if n := after.Groups - before.Groups; n != 1 {
		t.Errorf("%d groups ran, want 1 (the held job, joined by all %d writes)", n, len(calls))
	}
	if n := after.Reruns - before.Reruns; n != 1 {
		t.Errorf("%d groups run again with savepoints, want 1", n)
	}

	// What succeeded is there, with its keys; what failed left nothing: no row, no history,
	// no search key.
	for _, id := range []string{"a", "f"} {
		if _, err := s.Read(ctx, "Task", id); err != nil {
			t.Errorf("Read %s: %v", id, err)
		}
	}
	if r, err := s.Read(ctx, "Task", "upd"); err != nil || r.VersionID != 2 {
		t.Errorf("Read upd: %v, %v; want version 2", r, err)
	}
	if count(t, s, byOwner("org-new")) != 1 || count(t, s, byOwner("org-old")) != 0 {
		t.Error("the update's keys did not replace the old ones")
	}
	for _, id := range []string{"nope", "c1", "d", "e1", "e2", "p"} {
		if _, err := s.Read(ctx, "Task", id); !resources.IsKind(err, resources.KindNotFound) {
			t.Errorf("Read %s after its write failed: %v, want not found", id, err)
		}
		page, err := s.History(ctx, &resources.HistoryQuery{Type: "Task", ID: id, Count: 10})
		if err != nil || page.Total != 0 {
			t.Errorf("history of %s after its write failed: %v, %v", id, page, err)
		}
	}
	for _, owner := range []string{"org-b", "org-c", "org-d", "org-e", "org-p"} {
		if n := count(t, s, byOwner(owner)); n != 0 {
			t.Errorf("%d Tasks still found by the keys of the failed writes of %s", n, owner)
		}
	}
	if r, err := s.Read(ctx, "Task", "existing"); err != nil || r.VersionID != 1 {
		t.Errorf("the Task an Apply conflicted with changed: %v, %v", r, err)
	}
}

// TestGroup_ConcurrentIfMatch: many goroutines race to update the same Tasks (If-Match: each
// reads the current version and writes the next), while others write transactions of two
// Tasks, some of which conflict. Exactly one update per version wins; the losers, and the
// failed transactions, leave no trace; readers never see half of a transaction.
func TestGroup_ConcurrentIfMatch(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	const hot, rounds, racers, pairs = 4, 10, 8, 64
	for h := range hot {
		if err := s.Put(ctx, testTask(fmt.Sprintf("hot%d", h), 1, "org-0", fmt.Sprintf("hot%d", h))); err != nil {
			t.Fatal(err)
		}
	}
	// Pairs with an odd index conflict on their second write: "taken" exists at version 1.
	if err := s.Put(ctx, testTask("taken", 1, "org-t", "taken")); err != nil {
		t.Fatal(err)
	}

	var wins [hot][racers*rounds + 2]atomic.Int32
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var readerErr atomic.Value
	// Readers: the first Task of a pair visible means the second is too; an odd pair never.
	for r := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				p := (i*7 + r) % pairs
				_, err1 := s.Read(ctx, "Task", fmt.Sprintf("pair%d-a", p))
				_, err2 := s.Read(ctx, "Task", fmt.Sprintf("pair%d-b", p))
				if p%2 == 1 && err1 == nil {
					readerErr.Store(fmt.Sprintf("pair %d (a failed transaction) is visible", p))
				}
				if err1 == nil && err2 != nil {
					readerErr.Store(fmt.Sprintf("pair %d: a visible without b: %v", p, err2))
				}
			}
		}()
	}
	var writers sync.WaitGroup
	for h := range hot {
		for g := range racers {
			writers.Add(1)
			go func() {
				defer writers.Done()
				for range rounds {
					cur, err := s.Read(ctx, "Task", fmt.Sprintf("hot%d", h))
					if err != nil {
						t.Error(err)
						return
					}
					next := testTask(cur.ID, cur.VersionID+1, fmt.Sprintf("org-%d-%d-%d", h, cur.VersionID+1, g), cur.ID)
					err = s.Put(ctx, next)
					switch {
					case err == nil:
						wins[h][next.VersionID].Add(1)
					case !resources.IsKind(err, resources.KindConflict):
						t.Errorf("update: %v", err)
					}
				}
			}()
		}
	}
	for p := range pairs {
		writers.Add(1)
		go func() {
			defer writers.Done()
			b := testTask(fmt.Sprintf("pair%d-b", p), 1, "org-pair", "b")
			if p%2 == 1 {
				b = testTask("taken", 1, "org-pair", "b") // conflicts
			}
			err := s.Apply(ctx, []*resources.Write{{Resource: testTask(fmt.Sprintf("pair%d-a", p), 1, "org-pair", "a")}, {Resource: b}})
			if p%2 == 0 && err != nil {
				t.Errorf("pair %d: %v", p, err)
			}
			if p%2 == 1 {
				var ae *resources.ApplyError
				if !errors.As(err, &ae) || ae.Index != 1 || !resources.IsKind(err, resources.KindConflict) {
					t.Errorf("pair %d: got %v, want a conflict on write 1", p, err)
				}
			}
		}()
	}
	writers.Wait()
	close(stop)
	wg.Wait()
	if msg := readerErr.Load(); msg != nil {
		t.Error(msg)
	}

	for h := range hot {
		id := fmt.Sprintf("hot%d", h)
		cur, err := s.Read(ctx, "Task", id)
		if err != nil {
			t.Fatal(err)
		}
		// Every version from 2 to the current one had exactly one winner, and the history
		// holds exactly those versions.
		for v := int64(2); v <= cur.VersionID; v++ {
			if n := wins[h][v].Load(); n != 1 {
				t.Errorf("%s version %d: %d winners", id, v, n)
			}
		}
		page, err := s.History(ctx, &resources.HistoryQuery{Type: "Task", ID: id, Count: 100})
		if err != nil {
			t.Fatal(err)
		}
		if page.Total != cur.VersionID {
			t.Errorf("%s: %d history rows, current version %d", id, page.Total, cur.VersionID)
		}
		// Only the last winner's keys remain.
		for v := int64(2); v <= cur.VersionID; v++ {
			found := 0
			for g := range racers {
				found += count(t, s, byOwner(fmt.Sprintf("org-%d-%d-%d", h, v, g)))
			}
			if want := map[bool]int{true: 1, false: 0}[v == cur.VersionID]; found != want {
				t.Errorf("%s: the owner keys of version %d found %d times, want %d", id, v, found, want)
			}
		}
	}
	if n := count(t, s, &resources.Query{Type: "Task", Count: 1000, Clauses: []resources.Clause{
		{AnyKey: []string{resources.RefKey("owner", "Organization", "org-pair")}}}}); n != pairs {
		t.Errorf("%d Tasks of pairs stored, want %d (the %d even pairs, two each)", n, pairs, pairs/2)
	}
	st := s.WriteStats()
	t.Logf("%d writes in %d transactions, %d run again with savepoints", st.Jobs, st.Groups, st.Reruns)
}

// TestGroup_CreateIfNoneExistRace: creators with the same condition, in one group and
// free-running: exactly one creates, the others get its resource.
func TestGroup_CreateIfNoneExistRace(t *testing.T) {
	for _, grouped := range []bool{true, false} {
		t.Run(fmt.Sprintf("grouped=%v", grouped), func(t *testing.T) {
			s := openTest(t)
			ctx := context.Background()
			const creators = 16
			var release func()
			if grouped {
				release = hold(t, s)
			}
			existing := make([]*resources.Resource, creators)
			errs := make([]error, creators)
			var wg sync.WaitGroup
			for i := range creators {
				wg.Add(1)
				go func() {
					defer wg.Done()
					existing[i], errs[i] = s.CreateIfNoneExist(ctx, testTask(fmt.Sprintf("c%d", i), 1, "org", "same"), byIdentifier("same"))
				}()
			}
			if grouped {
				waitQueued(t, s, creators)
				release()
			}
			wg.Wait()
			winner := ""
			for i := range creators {
				if errs[i] != nil {
					t.Fatalf("creator %d: %v", i, errs[i])
				}
				if existing[i] == nil {
					if winner != "" {
						t.Fatalf("both c%d and %s were created", i, winner)
					}
					winner = fmt.Sprintf("c%d", i)
				}
			}
			if winner == "" {
				t.Fatal("no creator created")
			}
			for i := range creators {
				if existing[i] != nil && existing[i].ID != winner {
					t.Errorf("creator %d got %s, want the winner %s", i, existing[i].ID, winner)
				}
			}
			if n := count(t, s, byIdentifier("same")); n != 1 {
				t.Errorf("%d Tasks match the condition, want 1", n)
			}
		})
	}
}

// TestGroup_Cancel: a write whose context ends while it is still queued returns at once and
// is never written; one whose context ends after the writer took it gets its real result.
func TestGroup_Cancel(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()

	t.Run("queued", func(t *testing.T) {
		release := hold(t, s)
		cctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- s.Put(cctx, testTask("q", 1, "org-q", "q")) }()
		waitQueued(t, s, 1)
		cancel()
		select {
		case err := <-done:
			wantKind(t, "cancelled Put", err, resources.KindUnavailable)
		case <-time.After(10 * time.Second):
			t.Fatal("a cancelled queued write waited for the writer")
		}
		release()
		if err := s.Put(ctx, testTask("after", 1, "org-q", "after")); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Read(ctx, "Task", "q"); !resources.IsKind(err, resources.KindNotFound) {
			t.Errorf("the cancelled write was stored: %v", err)
		}
	})

	t.Run("taken", func(t *testing.T) {
		release := hold(t, s)
		// Behind the held job: a second holding job, then the Put. Both are taken together
		// into the held job's group once it returns; the second then blocks with the Put
		// already taken. (release returns once that group commits: after the gate below.)
		started, gate := make(chan struct{}), make(chan struct{})
		go s.submit(ctx, 0, func(*writer) error { close(started); <-gate; return nil })
		waitQueued(t, s, 1)
		cctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- s.Put(cctx, testTask("k", 1, "org-k", "k")) }()
		waitQueued(t, s, 2)
		released := make(chan struct{})
		go func() { release(); close(released) }()
		defer func() { <-released }()
		<-started
		cancel()
		select {
		case err := <-done:
			t.Fatalf("a taken write returned before its group committed: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
		close(gate)
		if err := <-done; err != nil {
			t.Fatalf("taken write: %v", err)
		}
		if _, err := s.Read(ctx, "Task", "k"); err != nil {
			t.Errorf("the taken write is not readable after it returned: %v", err)
		}
	})

	t.Run("already done", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		wantKind(t, "Put with a done context", s.Put(cctx, testTask("x", 1, "org-x", "x")), resources.KindUnavailable)
		if _, err := s.Read(ctx, "Task", "x"); !resources.IsKind(err, resources.KindNotFound) {
			t.Errorf("got %v, want not found", err)
		}
	})
}

// TestGroup_Close: writes after Close fail as unavailable instead of hanging.
func TestGroup_Close(t *testing.T) {
	s, err := Open(context.Background(), t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wantKind(t, "Put after Close", s.Put(context.Background(), testTask("z", 1, "org", "z")), resources.KindUnavailable)
}

// TestGroup_WALPagesPerResource measures what a commit writes: the WAL frames (one per page
// per commit) per Task created, one Task per transaction against 64 per transaction. It logs
// the figures (docs/benchmarks.md quotes them) and checks that grouping shares pages.
func TestGroup_WALPagesPerResource(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(context.Background(), dir, Options{noCheckpointer: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	walFrames := func() int64 {
		fi, err := os.Stat(filepath.Join(dir, FileName+"-wal"))
		if err != nil {
			t.Fatal(err)
		}
		return (fi.Size() - 32) / int64(24+s.PageSize())
	}
	// A connection of its own empties the WAL, so that each measure starts at its beginning.
	other, err := sql.Open("sqlite", "file:"+filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	// No checkpoints during the measure.
	if err := s.submit(ctx, 0, func(w *writer) error {
		_, err := w.conn.ExecContext(w.ctx, "PRAGMA wal_autocheckpoint = 0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	// Warm up: tables and indexes past their first pages.
	for i := range 2000 {
		if err := s.Put(ctx, testTask(fmt.Sprintf("w%d", i), 1, fmt.Sprintf("org-%d", i%20), fmt.Sprint("w", i))); err != nil {
			t.Fatal(err)
		}
	}
	const n = 256
	var perResource [2]float64
	for round, grouped := range []bool{false, true} {
		var busy, logFrames, done int
		if err := other.QueryRowContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &logFrames, &done); err != nil || busy != 0 {
			t.Fatalf("checkpoint: busy %d, %v", busy, err)
		}
		start := walFrames()
		if grouped {
			for k := 0; k < n; k += maxGroupJobs {
				release := hold(t, s)
				var wg sync.WaitGroup
				for i := k; i < k+maxGroupJobs; i++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						if err := s.Put(ctx, testTask(fmt.Sprintf("g%d", i), 1, fmt.Sprintf("org-%d", i%20), fmt.Sprint("g", i))); err != nil {
							t.Error(err)
						}
					}()
				}
				waitQueued(t, s, maxGroupJobs)
				release()
				wg.Wait()
			}
		} else {
			for i := range n {
				if err := s.Put(ctx, testTask(fmt.Sprintf("l%d", i), 1, fmt.Sprintf("org-%d", i%20), fmt.Sprint("l", i))); err != nil {
					t.Fatal(err)
				}
			}
		}
		perResource[round] = float64(walFrames()-start) / n
	}
	t.Logf("WAL pages written per Task created: %.1f one per transaction, %.1f in groups of %d", perResource[0], perResource[1], maxGroupJobs)
	if perResource[1] >= perResource[0]/2 {
		t.Errorf("groups of %d write %.1f pages per Task, alone %.1f: grouping should share most pages", maxGroupJobs, perResource[1], perResource[0])
	}
}
