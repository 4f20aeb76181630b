package sqlitestore

import (
	"sync"
	"sync/atomic"

	"github.com/calaimfhir/calaimfhir/resources"
)

// The read cache keeps current versions (their stored bytes) in memory for Read, the most
// frequent request of every client. A point query through database/sql was the largest cost
// of a read by id left in the server (17% of the process's CPU under `bench --mix read=1`,
// ≈ 20 µs: the statement, the B-tree descents, and page reads after every commit, since a
// commit makes the readers' page caches start over).
//
// It is exact for this process's writes: the writer (writer.go) hands it every version a
// group committed, before it answers the group's callers, so a client that wrote and then
// reads sees its write. Versions only grow, and the cache keeps the highest it was given.
// A Read that missed queries the database and offers what it found; the offer is taken only
// if nothing was committed or reset since the Read began (epoch), because the row it read may
// be older than a version committed meanwhile whose entry was then evicted.
//
// Writes by another process on the same files (a second server, `calaimfhir import --data`
// beside a running server, which the README advises against) are not seen by the writer:
// every checkpointEvery (Store.checkExternal) the writer asks PRAGMA data_version, which
// changes when another connection commits, and empties the cache when it has. So such a write
// reaches this process's reads within checkpointEvery, as it reaches its access sets within
// the access cache's TTL; searches, vreads and history always read the database.
type readCache struct {
	max   int64 // bytes of JSON (and a fixed overhead per entry) kept at most
	mu    sync.RWMutex
	m     map[cacheKey]*cached
	bytes int64
	// epoch moves with every commit the writer hands over and every reset (see offer).
	epoch atomic.Uint64
	// resets counts the times another process's commit emptied the cache.
	resets atomic.Int64
}

type cacheKey struct{ typ, id string }

type cached struct {
	version int64
	lu      int64
	deleted bool
	json    []byte // len == cap, so that an append by a caller copies
}

// entryOverhead is the memory an entry costs beyond its JSON: map slot, key strings, struct.
const entryOverhead = 160

// DefaultReadCacheBytes bounds the read cache unless Options.ReadCacheBytes says otherwise.
const DefaultReadCacheBytes = 64 << 20

func newReadCache(max int64) *readCache {
	return &readCache{max: max, m: map[cacheKey]*cached{}}
}

func (e *cached) size() int64 { return int64(len(e.json)) + entryOverhead }

// resource returns the entry as Read would return the row: a tombstone comes with KindGone.
func (e *cached) resource(typ, id string) (*resources.Resource, error) {
	r := &resources.Resource{Type: typ, ID: id, VersionID: e.version, LastUpdated: fromMicros(e.lu), Deleted: e.deleted}
	if e.deleted {
		return r, resources.Errorf(resources.KindGone, "%s/%s was deleted", typ, id)
	}
	r.JSON = e.json
	return r, nil
}

func (c *readCache) get(typ, id string) (*cached, bool) {
	c.mu.RLock()
	e, ok := c.m[cacheKey{typ, id}]
	c.mu.RUnlock()
	return e, ok
}

// offer stores what a Read found in the database, unless the cache's epoch has moved since
// the Read began (its row may then be older than a committed version) or a newer version is
// already there.
func (c *readCache) offer(r *resources.Resource, epoch uint64) {
	e := &cached{version: r.VersionID, lu: micros(r.LastUpdated), deleted: r.Deleted, json: r.JSON[:len(r.JSON):len(r.JSON)]}
	r.JSON = e.json
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.epoch.Load() != epoch {
		return
	}
	c.storeLocked(cacheKey{r.Type, r.ID}, e)
}

// committed takes the versions of a committed group (the writer calls it before answering).
func (c *readCache) committed(rs []*resources.Resource) {
	if len(rs) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch.Add(1)
	for _, r := range rs {
		e := &cached{version: r.VersionID, lu: micros(r.LastUpdated), deleted: r.Deleted}
		if !r.Deleted {
			e.json = append([]byte(nil), r.JSON...) // the caller's buffer is its own
		}
		c.storeLocked(cacheKey{r.Type, r.ID}, e)
	}
}

func (c *readCache) storeLocked(k cacheKey, e *cached) {
	if old, ok := c.m[k]; ok {
		if old.version >= e.version {
			return
		}
		c.bytes -= old.size()
	}
	if e.size() > c.max/16 {
		delete(c.m, k) // too large to be worth its room; the older version is gone too
		return
	}
	c.m[k] = e
	c.bytes += e.size()
	if c.bytes > c.max {
		// Evict at random (map order) down to 7/8 of the bound: no bookkeeping on hits,
		// and a read-mostly working set that fits is never touched.
		for k, old := range c.m {
			delete(c.m, k)
			c.bytes -= old.size()
			if c.bytes <= c.max-c.max/8 {
				break
			}
		}
	}
}

// reset empties the cache (another process has committed).
func (c *readCache) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch.Add(1)
	c.resets.Add(1)
	clear(c.m)
	c.bytes = 0
}
