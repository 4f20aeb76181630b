package sqlitestore

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/calaimfhir/calaimfhir/resources"
)

// TestReadCache_OtherProcess: a write by another store on the same files (standing for another
// process) is not seen by this store's cached reads until the external check runs, and is
// seen after it; this store's own writes are seen at once.
func TestReadCache_OtherProcess(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(ctx, dir, Options{noCheckpointer: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	other, err := Open(ctx, dir, Options{noCheckpointer: true, ReadCacheBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	version := func() int64 {
		t.Helper()
		r, err := s.Read(ctx, "Task", "t1")
		if err != nil {
			t.Fatal(err)
		}
		return r.VersionID
	}
	if err := s.Put(ctx, testTask("t1", 1, "org-a", "x")); err != nil {
		t.Fatal(err)
	}
	if v := version(); v != 1 {
		t.Fatalf("own write: version %d, want 1", v)
	}
	if err := other.Put(ctx, testTask("t1", 2, "org-b", "x")); err != nil {
		t.Fatal(err)
	}
	if v := version(); v != 1 {
		t.Fatalf("before the check a cached read gives version %d; this test needs it served from the cache (1)", v)
	}
	if err := s.checkExternal(ctx); err != nil {
		t.Fatal(err)
	}
	if v := version(); v != 2 {
		t.Errorf("after the check: version %d, want 2", v)
	}
	if n := s.cache.resets.Load(); n != 1 {
		t.Errorf("%d resets, want 1", n)
	}
	// Own writes, and the checkpoints the store runs (PASSIVE, on a connection of its own;
	// the writer's next commit then starts the WAL over), are not another process: the next
	// check keeps the cache. (A TRUNCATE checkpoint by another connection does count as a
	// change: a needless reset, no stale read.)
	if err := s.Put(ctx, testTask("t1", 3, "org-a", "x")); err != nil {
		t.Fatal(err)
	}
	ckpt, err := sql.Open("sqlite", "file:"+filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer ckpt.Close()
	var busy, logFrames, done int
	if err := ckpt.QueryRow("PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &logFrames, &done); err != nil || busy != 0 {
		t.Fatalf("checkpoint: busy %d, %d of %d frames, %v", busy, done, logFrames, err)
	}
	if err := s.Put(ctx, testTask("t1", 4, "org-a", "x")); err != nil {
		t.Fatal(err)
	}
	if err := s.checkExternal(ctx); err != nil {
		t.Fatal(err)
	}
	if n := s.cache.resets.Load(); n != 1 {
		t.Errorf("own write and checkpoint reset the cache (%d resets, want 1)", n)
	}
	if v := version(); v != 4 {
		t.Errorf("own update: version %d, want 4", v)
	}
	// A delete is cached as a tombstone: gone, with its version.
	del := &resources.Resource{Type: "Task", ID: "t1", VersionID: 5, LastUpdated: testTask("t1", 5, "", "").LastUpdated, Deleted: true}
	if err := s.Put(ctx, del); err != nil {
		t.Fatal(err)
	}
	for range 2 { // from the writer's hand-over, then as offered by a read
		r, err := s.Read(ctx, "Task", "t1")
		if !resources.IsKind(err, resources.KindGone) || r == nil || r.VersionID != 5 || r.JSON != nil {
			t.Fatalf("read of the deleted task: %+v, %v", r, err)
		}
		s.cache.reset()
	}
}

// TestReadCache_FailedWriteNotCached: an Apply whose second write fails stores nothing, and
// its first write must not reach the cache either.
func TestReadCache_FailedWriteNotCached(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Put(ctx, testTask("b", 1, "org", "b")); err != nil {
		t.Fatal(err)
	}
	err = s.Apply(ctx, []*resources.Write{
		{Resource: testTask("a", 1, "org", "a")},
		{Resource: testTask("b", 5, "org", "b")}, // not the next version: conflict
	})
	if !resources.IsKind(err, resources.KindConflict) {
		t.Fatalf("apply: %v, want a conflict", err)
	}
	if r, err := s.Read(ctx, "Task", "a"); !resources.IsKind(err, resources.KindNotFound) {
		t.Errorf("read of the write that was undone: %+v, %v; want not found", r, err)
	}
	// The same in a group with other callers' writes, which do commit (savepoint rerun).
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i%4 == 0 {
				s.Apply(ctx, []*resources.Write{
					{Resource: testTask(fmt.Sprint("undone-", i), 1, "org", "u")},
					{Resource: testTask("b", 9, "org", "b")}})
				return
			}
			if err := s.Put(ctx, testTask(fmt.Sprint("kept-", i), 1, "org", "k")); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	for i := range 16 {
		name := fmt.Sprint("kept-", i)
		undone := i%4 == 0
		if undone {
			name = fmt.Sprint("undone-", i)
		}
		if _, err := s.Read(ctx, "Task", name); undone != resources.IsKind(err, resources.KindNotFound) || (!undone && err != nil) {
			t.Errorf("read %s: %v", name, err)
		}
	}
}

// TestReadCache_ConcurrentWritesAndEvictions: readers and writers of the same resources, with
// a cache small enough to evict all the time; every read returns a version no older than the
// last one its writer had committed before the read, and after the writes every read returns
// the last version.
func TestReadCache_ConcurrentWritesAndEvictions(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, t.TempDir(), Options{ReadCacheBytes: 8 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const ids, versions = 8, 40
	var committed [ids]int64 // by the writer goroutines, read by readers
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for v := int64(1); v <= versions; v++ {
				if err := s.Put(ctx, testTask(fmt.Sprint("t", i), v, "org", "x")); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				committed[i] = v
				mu.Unlock()
			}
		}()
	}
	done := make(chan struct{})
	var readers sync.WaitGroup
	for range 4 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for n := 0; ; n++ {
				select {
				case <-done:
					return
				default:
				}
				i := n % ids
				mu.Lock()
				floor := committed[i]
				mu.Unlock()
				r, err := s.Read(ctx, "Task", fmt.Sprint("t", i))
				if floor == 0 {
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				if r.VersionID < floor {
					t.Errorf("t%d: read version %d after version %d was committed", i, r.VersionID, floor)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(done)
	readers.Wait()
	for i := range ids {
		for range 2 { // the first may fill the cache, the second is served by it
			r, err := s.Read(ctx, "Task", fmt.Sprint("t", i))
			if err != nil || r.VersionID != versions {
				t.Fatalf("t%d after the writes: %+v, %v; want version %d", i, r, err, versions)
			}
		}
	}
	s.cache.mu.RLock()
	defer s.cache.mu.RUnlock()
	if s.cache.bytes > s.cache.max {
		t.Errorf("cache holds %d bytes, bound %d", s.cache.bytes, s.cache.max)
	}
}
