package sqlitestore

import (
	"sync/atomic"

	"github.com/calaimfhir/calaimfhir/resources"
)

// typeClocks count, per resource type, the groups that committed a write of that type (a
// version, or a change of a version's keys), and every change another process made (seen by
// checkExternal). The writer moves a type's clock after the group's COMMIT and before it
// answers the group's callers, so a reader that reads a clock and then queries sees every
// write the clock had counted, and a write whose caller has been answered has moved the
// clock (resources.TypeClock says what the service builds on that).
type typeClocks struct {
	m     map[string]*atomic.Uint64 // every type of resources.Types; read-only after newTypeClocks
	other atomic.Uint64             // the clock of a type not in resources.Types
}

func newTypeClocks() *typeClocks {
	c := &typeClocks{m: make(map[string]*atomic.Uint64, len(resources.Types))}
	for _, typ := range resources.Types {
		c.m[typ] = new(atomic.Uint64)
	}
	return c
}

func (c *typeClocks) of(typ string) *atomic.Uint64 {
	if n, ok := c.m[typ]; ok {
		return n
	}
	return &c.other
}

// moved moves the clocks of types (repeats move a clock more than once: harmless).
func (c *typeClocks) moved(types []string) {
	for _, typ := range types {
		c.of(typ).Add(1)
	}
}

// movedAll moves every clock: another process has committed, and what it wrote is not known.
func (c *typeClocks) movedAll() {
	for _, n := range c.m {
		n.Add(1)
	}
	c.other.Add(1)
}

// TypeClock implements resources.TypeClock. Another process's commit moves the clocks once
// checkExternal has seen it, within checkpointEvery: the bound the read cache has too.
func (s *Store) TypeClock(typ string) (uint64, bool) {
	return s.clocks.of(typ).Load(), true
}

var _ resources.TypeClock = (*Store)(nil)
