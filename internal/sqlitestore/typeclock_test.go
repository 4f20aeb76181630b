package sqlitestore

import (
	"context"
	"testing"

	"github.com/calaimfhir/calaimfhir/resources"
)

// TestTypeClock: a type's clock has moved when a write of that type returns (Put, Apply,
// SetKeys), and not for writes of other types or writes that failed alone; another process's
// write moves every clock once checkExternal has seen it, also without a read cache.
func TestTypeClock(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(ctx, dir, Options{noCheckpointer: true, ReadCacheBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	other, err := Open(ctx, dir, Options{noCheckpointer: true})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()

	clock := func(typ string) uint64 {
		n, ok := s.TypeClock(typ)
		if !ok {
			t.Fatal("the embedded store has no clock")
		}
		return n
	}
	type step struct {
		name  string
		write func() error
		moves bool // the Task clock
	}
	task1 := testTask("t1", 1, "org-a", "x")
	steps := []step{
		{"put Task", func() error { return s.Put(ctx, task1) }, true},
		{"put Patient", func() error {
			return s.Put(ctx, &resources.Resource{Type: "Patient", ID: "p1", VersionID: 1, LastUpdated: task1.LastUpdated, JSON: []byte(`{"resourceType":"Patient","id":"p1"}`)})
		}, false},
		{"put Task, wrong version", func() error { return s.Put(ctx, testTask("t1", 5, "org-a", "x")) }, false},
		{"apply Task", func() error {
			return s.Apply(ctx, []*resources.Write{{Resource: testTask("t1", 2, "org-a", "x")}})
		}, true},
		{"set a Task's keys", func() error {
			return s.SetKeys(ctx, "Task", "t1", 2, resources.MemberKeyPrefix, []string{resources.MemberKey("Organization/plan-1")})
		}, true},
		{"set a Task's keys as they are", func() error {
			return s.SetKeys(ctx, "Task", "t1", 2, resources.MemberKeyPrefix, []string{resources.MemberKey("Organization/plan-1")})
		}, false},
		{"another process's Patient", func() error {
			if err := other.Put(ctx, &resources.Resource{Type: "Patient", ID: "p2", VersionID: 1, LastUpdated: task1.LastUpdated, JSON: []byte(`{"resourceType":"Patient","id":"p2"}`)}); err != nil {
				return err
			}
			return s.checkExternal(ctx)
		}, true},
		{"no other process", func() error { return s.checkExternal(ctx) }, false},
	}
	for _, st := range steps {
		before := clock("Task")
		err := st.write()
		if (err != nil) != (st.name == "put Task, wrong version") {
			t.Fatalf("%s: %v", st.name, err)
		}
		if moved := clock("Task") != before; moved != st.moves {
			t.Errorf("%s: the Task clock moved: %v, want %v", st.name, moved, st.moves)
		}
	}
}
