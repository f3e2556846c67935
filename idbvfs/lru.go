package idbvfs

// lru holds clean blocks, most recently used first, bounded in bytes.
// Dirty blocks never live here (they are pinned until committed).
type lru struct {
	max   int64 // bound in bytes; <= 0: one block
	bytes int64
	m     map[int64]*lruEntry
	head  lruEntry // sentinel: head.next is the most recent
}

type lruEntry struct {
	idx        int64
	data       []byte
	prev, next *lruEntry
}

func newLRU(max int64) *lru {
	c := &lru{max: max, m: map[int64]*lruEntry{}}
	c.head.next, c.head.prev = &c.head, &c.head
	return c
}

func (c *lru) unlink(e *lruEntry) {
	e.prev.next, e.next.prev = e.next, e.prev
}

func (c *lru) pushFront(e *lruEntry) {
	e.prev, e.next = &c.head, c.head.next
	c.head.next.prev = e
	c.head.next = e
}

// get returns a block and marks it most recently used.
func (c *lru) get(idx int64) ([]byte, bool) {
	e, ok := c.m[idx]
	if !ok {
		return nil, false
	}
	c.unlink(e)
	c.pushFront(e)
	return e.data, true
}

// peek tells whether a block is cached without touching its recency.
func (c *lru) has(idx int64) bool {
	_, ok := c.m[idx]
	return ok
}

// put adds or replaces a block as most recently used, then evicts the least
// recently used blocks beyond the bound (never the one just added).
func (c *lru) put(idx int64, data []byte) {
	if e, ok := c.m[idx]; ok {
		c.bytes += int64(len(data) - len(e.data))
		e.data = data
		c.unlink(e)
		c.pushFront(e)
	} else {
		e := &lruEntry{idx: idx, data: data}
		c.m[idx] = e
		c.bytes += int64(len(data))
		c.pushFront(e)
	}
	for c.bytes > c.max && c.head.prev != c.head.next {
		c.remove(c.head.prev.idx)
	}
}

// take removes a block and returns it (used when a clean block becomes dirty).
func (c *lru) take(idx int64) ([]byte, bool) {
	e, ok := c.m[idx]
	if !ok {
		return nil, false
	}
	c.unlink(e)
	delete(c.m, idx)
	c.bytes -= int64(len(e.data))
	return e.data, true
}

func (c *lru) remove(idx int64) { c.take(idx) }

// dropFrom removes every block with index >= from.
func (c *lru) dropFrom(from int64) {
	for idx := range c.m {
		if idx >= from {
			c.remove(idx)
		}
	}
}

func (c *lru) len() int { return len(c.m) }
