package analyze

// u64table is an open-addressing hash table from uint64 keys (already well mixed: block keys
// are splitmix64 outputs) to int32 values, with linear probing, at most half full. It has no
// delete: the LRU checks entries against its nodes and rebuilds the table in place instead.
// The key 0 is stored as 1 (a 2⁻⁶⁴ collision).
type u64table struct {
	e    []slot // key and value side by side: one cache line per probe
	n    int
	mask uint64
}

type slot struct {
	key uint64
	val int32
}

func newU64Table(hint int) *u64table {
	size := 16
	for size < 2*hint {
		size *= 2
	}
	return &u64table{e: make([]slot, size), mask: uint64(size - 1)}
}

func fixKey(k uint64) uint64 {
	if k == 0 {
		return 1
	}
	return k
}

// get returns the value of k.
func (t *u64table) get(k uint64) (int32, bool) {
	k = fixKey(k)
	for i := k & t.mask; ; i = (i + 1) & t.mask {
		switch t.e[i].key {
		case k:
			return t.e[i].val, true
		case 0:
			return 0, false
		}
	}
}

// put sets k to v and reports whether k was new.
func (t *u64table) put(k uint64, v int32) bool {
	k = fixKey(k)
	if 2*(t.n+1) > len(t.e) {
		t.grow()
	}
	for i := k & t.mask; ; i = (i + 1) & t.mask {
		switch t.e[i].key {
		case k:
			t.e[i].val = v
			return false
		case 0:
			t.e[i] = slot{k, v}
			t.n++
			return true
		}
	}
}

func (t *u64table) grow() {
	old := t.e
	t.e = make([]slot, 2*len(old))
	t.mask = uint64(len(t.e) - 1)
	t.n = 0
	for _, s := range old {
		if s.key != 0 {
			t.put(s.key, s.val)
		}
	}
}

// u64set is an insert-only set of uint64 keys with linear probing: 8 bytes a slot, at most
// three quarters full (the unbounded cache holds every block ever seen).
type u64set struct {
	keys []uint64
	n    int
	mask uint64
}

// newU64Set returns a set sized to hold hint keys without growing.
func newU64Set(hint int) *u64set {
	size := 16
	for 3*size < 4*(hint+1) {
		size *= 2
	}
	return &u64set{keys: make([]uint64, size), mask: uint64(size - 1)}
}

// add inserts k and reports whether it was new.
func (s *u64set) add(k uint64) bool {
	k = fixKey(k)
	if 4*(s.n+1) > 3*len(s.keys) {
		old := s.keys
		s.keys = make([]uint64, 2*len(old))
		s.mask = uint64(len(s.keys) - 1)
		s.n = 0
		for _, o := range old {
			if o != 0 {
				s.add(o)
			}
		}
	}
	for i := k & s.mask; ; i = (i + 1) & s.mask {
		switch s.keys[i] {
		case k:
			return false
		case 0:
			s.keys[i] = k
			s.n++
			return true
		}
	}
}
