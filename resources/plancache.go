package resources

import "sync"

// The plan cache keeps plansOf's answers (a patient's plans, from the Coverage naming the
// patient as beneficiary) for as long as no Coverage has been written, on a store that can
// say so without a query (TypeClock: the embedded store). Every write about a patient asks
// for the patient's plans twice, before its commit (grantMembers) and after it
// (checkMembers); under writes each ask read its index pages from the file again (SQLite
// starts a read connection's page cache over after every commit), which made plansOf 9.4% of
// the server's CPU under `bench --mix crud` (docs/benchmarks.md).
//
// An answer is kept with the Coverage clock read before its query, and served while the clock
// still reads the same. That is as exact as the query, and keeps membership.go's argument:
// a Coverage write moves the clock after its commit and before its caller is answered, so
// before its fan-out runs. A check after a resource's commit that is served from the cache
// therefore ran before that Coverage's fan-out, which then finds the stored resource; a check
// that ran after the clock moved queries the store and sees the Coverage.
//
// Writes by another process reach this cache when the store notices them (the embedded
// store: within a quarter of a second), as they reach its read cache. A store without a
// TypeClock (MongoDB, where several server processes write) asks the store every time.

// TypeClock is implemented by stores that see every write made to them: TypeClock(typ)
// returns a number that moves after a write of a resource of typ (a version, or a change of
// its keys) commits and before that write's caller is answered, and once the store has
// noticed that another process wrote. ok is false when the store cannot promise that now.
type TypeClock interface {
	TypeClock(typ string) (n uint64, ok bool)
}

// maxPlanCacheEntries bounds the plan cache: when full, an eighth of it is dropped (at
// random, map order).
const maxPlanCacheEntries = 1 << 16

type planCache struct {
	mu sync.RWMutex
	m  map[string]planEntry
}

type planEntry struct {
	clock uint64 // the Coverage clock read before the query
	plans []string
}

// get returns patient's plans if they were found under clock.
func (c *planCache) get(patient string, clock uint64) ([]string, bool) {
	c.mu.RLock()
	e, ok := c.m[patient]
	c.mu.RUnlock()
	if !ok || e.clock != clock {
		return nil, false
	}
	return e.plans, true
}

// put keeps plans, found under clock, unless an answer found under a later clock is there.
func (c *planCache) put(patient string, clock uint64, plans []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]planEntry{}
	}
	if e, ok := c.m[patient]; ok && e.clock > clock {
		return
	}
	if len(c.m) >= maxPlanCacheEntries {
		n := 0
		for k := range c.m {
			delete(c.m, k)
			if n++; n >= maxPlanCacheEntries/8 {
				break
			}
		}
	}
	c.m[patient] = planEntry{clock: clock, plans: plans}
}

// coverageClock reads the store's Coverage clock; ok is false when it has none.
func (s *Service) coverageClock() (uint64, bool) {
	tc, ok := s.Store.(TypeClock)
	if !ok {
		return 0, false
	}
	return tc.TypeClock("Coverage")
}
