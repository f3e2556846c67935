package idbvfs

import "testing"

func TestLRUBoundAndOrder(t *testing.T) {
	c := newLRU(3 * 10)
	blk := func() []byte { return make([]byte, 10) }
	c.put(1, blk())
	c.put(2, blk())
	c.put(3, blk())
	if _, ok := c.get(1); !ok { // 1 becomes most recent
		t.Fatal("block 1 missing")
	}
	c.put(4, blk()) // evicts 2, the least recently used
	if c.has(2) || !c.has(1) || !c.has(3) || !c.has(4) {
		t.Fatalf("after eviction: has1=%v has2=%v has3=%v has4=%v", c.has(1), c.has(2), c.has(3), c.has(4))
	}
	if c.bytes != 30 || c.len() != 3 {
		t.Fatalf("bytes=%d len=%d, want 30, 3", c.bytes, c.len())
	}
	if b, ok := c.take(3); !ok || len(b) != 10 || c.has(3) || c.bytes != 20 {
		t.Fatalf("take: ok=%v bytes=%d", ok, c.bytes)
	}
	c.dropFrom(4)
	if c.has(4) || !c.has(1) || c.bytes != 10 {
		t.Fatalf("dropFrom: has4=%v has1=%v bytes=%d", c.has(4), c.has(1), c.bytes)
	}
}

func TestLRUKeepsNewestEvenIfOverBound(t *testing.T) {
	c := newLRU(5)
	c.put(1, make([]byte, 10))
	if !c.has(1) || c.len() != 1 {
		t.Fatal("a single block larger than the bound must stay (it is in use)")
	}
	c.put(2, make([]byte, 10))
	if c.has(1) || !c.has(2) {
		t.Fatal("the older block must be evicted")
	}
}
