package sqlitestore

import (
	"container/list"
	"context"
	"database/sql"
	"sync"
)

// stmtCache is the read pool with each SQL text prepared once (database/sql then prepares it
// once per connection of the pool). A search's SQL depends only on the query's shape, its
// values being parameters, so the same few texts come back request after request: parsing
// and planning them anew was 5% of the CPU of `calaimfhir bench --mix crud` (sqlite3Prepare,
// under searches and their snapshot history lookups). The least recently used text goes
// when more than max are cached, so that unusual shapes cannot grow it without bound.
type stmtCache struct {
	db  preparer
	max int

	mu  sync.Mutex
	lru *list.List // of *cachedStmt, the most recently used first
	m   map[string]*list.Element
}

type cachedStmt struct {
	sql     string
	st      *sql.Stmt
	users   int  // callers between get and release
	evicted bool // out of the cache: the last user closes it
}

// preparer is the read pool (*sql.DB) or the write connection (*sql.Conn: the searches a
// conditional write runs in the writer, each as often as the reads' shapes come back).
type preparer interface {
	PrepareContext(ctx context.Context, query string) (*sql.Stmt, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func newStmtCache(db preparer, max int) *stmtCache {
	return &stmtCache{db: db, max: max, lru: list.New(), m: map[string]*list.Element{}}
}

// get returns the prepared statement for query; release it once its query has run (rows
// hold the statement open on their own until they are closed).
func (c *stmtCache) get(ctx context.Context, query string) (*cachedStmt, error) {
	c.mu.Lock()
	if e, ok := c.m[query]; ok {
		c.lru.MoveToFront(e)
		cs := e.Value.(*cachedStmt)
		cs.users++
		c.mu.Unlock()
		return cs, nil
	}
	c.mu.Unlock()
	st, err := c.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[query]; ok { // prepared meanwhile by another caller
		st.Close()
		c.lru.MoveToFront(e)
		cs := e.Value.(*cachedStmt)
		cs.users++
		return cs, nil
	}
	cs := &cachedStmt{sql: query, st: st, users: 1}
	c.m[query] = c.lru.PushFront(cs)
	for c.lru.Len() > c.max {
		old := c.lru.Remove(c.lru.Back()).(*cachedStmt)
		delete(c.m, old.sql)
		old.evicted = true
		if old.users == 0 {
			old.st.Close()
		}
	}
	return cs, nil
}

func (c *stmtCache) release(cs *cachedStmt) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cs.users--
	if cs.evicted && cs.users == 0 {
		cs.st.Close()
	}
}

// QueryContext and QueryRowContext make the cache a querier.
func (c *stmtCache) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	cs, err := c.get(ctx, query)
	if err != nil {
		return nil, err
	}
	defer c.release(cs)
	return cs.st.QueryContext(ctx, args...)
}

func (c *stmtCache) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	cs, err := c.get(ctx, query)
	if err != nil {
		// A Row cannot be made to carry err; the pool's own QueryRowContext reports the
		// same preparation error at Scan.
		return c.db.QueryRowContext(ctx, query, args...)
	}
	defer c.release(cs)
	return cs.st.QueryRowContext(ctx, args...)
}

// close closes every cached statement (before the pool).
func (c *stmtCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for e := c.lru.Front(); e != nil; e = e.Next() {
		cs := e.Value.(*cachedStmt)
		cs.evicted = true
		if cs.users == 0 {
			cs.st.Close()
		}
	}
	c.lru.Init()
	clear(c.m)
}
