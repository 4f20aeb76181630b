package sqlitestore

import (
	"context"
	"fmt"
	"sync"
	"testing"
)

// TestStmtCache: statements are shared per SQL text, the least recently used goes past the
// bound, and one evicted while a caller holds it stays usable until that caller releases it.
func TestStmtCache(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	c := newStmtCache(s.r, 2)
	q := func(n int) string { return fmt.Sprintf("SELECT %d + ?", n) }
	answer := func(query string) int {
		t.Helper()
		var v int
		if err := c.QueryRowContext(ctx, query, 1).Scan(&v); err != nil {
			t.Fatalf("%s: %v", query, err)
		}
		return v
	}
	if got := answer(q(1)); got != 2 {
		t.Fatalf("got %d", got)
	}
	held, err := c.get(ctx, q(1))
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := c.get(ctx, q(1)); again != held {
		t.Fatal("the same text was prepared twice")
	} else {
		c.release(again)
	}
	answer(q(2))
	answer(q(3)) // evicts q(1), which is held
	if _, ok := c.m[q(1)]; ok || c.lru.Len() != 2 {
		t.Fatalf("cache holds %d statements, q(1) still in it: %v", c.lru.Len(), ok)
	}
	var v int
	if err := held.st.QueryRowContext(ctx, 1).Scan(&v); err != nil || v != 2 {
		t.Fatalf("evicted statement while held: %d, %v", v, err)
	}
	c.release(held)
	if err := held.st.QueryRowContext(ctx, 1).Scan(&v); err == nil {
		t.Fatal("an evicted statement was not closed when its last user released it")
	}
	// Concurrent callers over more texts than the bound: every answer right.
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				n := (g + i) % 5
				rows, err := c.QueryContext(ctx, q(n), 1)
				if err != nil {
					t.Error(err)
					return
				}
				var v int
				for rows.Next() {
					rows.Scan(&v)
				}
				rows.Close()
				if v != n+1 {
					t.Errorf("%s: %d", q(n), v)
					return
				}
			}
		}()
	}
	wg.Wait()
	c.close()
}
