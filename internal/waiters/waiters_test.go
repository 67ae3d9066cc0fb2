package waiters

import (
	"sync"
	"testing"
)

func TestAddDeliver(t *testing.T) {
	s := New[uint64, string](4)
	ch, remove, ok := s.Add(7, 1)
	if !ok {
		t.Fatal("Add refused on an empty set")
	}
	defer remove()
	if !s.Deliver(7, "a") {
		t.Fatal("Deliver to a waiter reported false")
	}
	if got := <-ch; got != "a" {
		t.Fatalf("got %q, want a", got)
	}
	if s.Deliver(8, "b") {
		t.Fatal("Deliver to a key nobody waits under reported true")
	}
	if n := s.Len(); n != 1 {
		t.Fatalf("Len %d, want 1", n)
	}
}

func TestRemove(t *testing.T) {
	s := New[uint64, int](4)
	ch, remove, _ := s.Add(1, 1)
	remove()
	remove() // a second call is harmless
	if s.Deliver(1, 1) {
		t.Fatal("Deliver after remove reported true")
	}
	select {
	case v := <-ch:
		t.Fatalf("removed waiter got %d", v)
	default:
	}
	if n := s.Len(); n != 0 {
		t.Fatalf("Len %d after remove, want 0", n)
	}

	// A stale remove must not drop a later registration of the same key.
	ch2, remove2, ok := s.Add(1, 1)
	if !ok {
		t.Fatal("Add of a removed key refused")
	}
	defer remove2()
	remove()
	if !s.Deliver(1, 2) || <-ch2 != 2 {
		t.Fatal("a stale remove dropped the new registration")
	}
}

func TestFullBuffer(t *testing.T) {
	for _, buf := range []int{1, 8} {
		s := New[uint64, int](1)
		ch, remove, _ := s.Add(1, buf)
		for i := range buf {
			if !s.Deliver(1, i) {
				t.Fatalf("buf %d: delivery %d refused", buf, i)
			}
		}
		if s.Deliver(1, buf) {
			t.Fatalf("buf %d: Deliver to a full channel reported true", buf)
		}
		for i := range buf {
			if v := <-ch; v != i {
				t.Fatalf("buf %d: got %d, want %d", buf, v, i)
			}
		}
		if !s.Deliver(1, 0) {
			t.Fatalf("buf %d: Deliver refused once the channel drained", buf)
		}
		remove()
	}
}

func TestClash(t *testing.T) {
	s := New[uint64, int](4)
	_, remove, _ := s.Add(1, 1)
	defer remove()
	if _, _, ok := s.Add(1, 1); ok {
		t.Fatal("Add of a key in use succeeded")
	}
	if _, _, ok := s.AddAll([]uint64{2, 1}, 1); ok {
		t.Fatal("AddAll with a key in use succeeded")
	}
	if n := s.Len(); n != 1 {
		t.Fatalf("a refused AddAll left %d keys, want 1", n)
	}
}

// TestBounded shows the set never holds more than its bound, whatever is
// asked of it: registrations past it are refused, deliveries to unknown keys
// add nothing, and room comes back as waiters leave.
func TestBounded(t *testing.T) {
	const max = 16
	s := New[uint64, int](max)
	var removes []func()
	for k := range uint64(10 * max) {
		if _, remove, ok := s.Add(k, 8); ok {
			removes = append(removes, remove)
		}
		if n := s.Len(); n > max {
			t.Fatalf("Len %d, over the bound %d", n, max)
		}
	}
	if len(removes) != max {
		t.Fatalf("%d registrations accepted, want %d", len(removes), max)
	}
	for k := range uint64(100000) {
		s.Deliver(1<<32+k, 1)
	}
	if n := s.Len(); n != max {
		t.Fatalf("Len %d after deliveries to unknown keys, want %d", n, max)
	}
	if _, _, ok := s.AddAll([]uint64{1 << 40}, 1); ok {
		t.Fatal("AddAll on a full set succeeded")
	}
	removes[0]()
	if _, _, ok := s.AddAll([]uint64{1 << 40, 1<<40 + 1}, 1); ok {
		t.Fatal("AddAll of two keys with room for one succeeded")
	}
	if _, _, ok := s.Add(1<<40, 1); !ok {
		t.Fatal("Add refused after a waiter left")
	}
}

func TestAddAll(t *testing.T) {
	s := New[uint64, uint64](8)
	ch, remove, ok := s.AddAll([]uint64{1, 2, 3}, 3)
	if !ok {
		t.Fatal("AddAll refused")
	}
	for _, k := range []uint64{3, 1} {
		if !s.Deliver(k, k) {
			t.Fatalf("Deliver under %d refused", k)
		}
	}
	if a, b := <-ch, <-ch; a != 3 || b != 1 {
		t.Fatalf("got %d, %d; want 3, 1", a, b)
	}
	if n := s.Len(); n != 3 {
		t.Fatalf("Len %d, want 3", n)
	}
	remove()
	if n := s.Len(); n != 0 {
		t.Fatalf("Len %d after remove, want 0", n)
	}
}

func TestConcurrent(t *testing.T) {
	const waiters, rounds = 32, 200
	s := New[int, int](waiters)
	var wg sync.WaitGroup
	for w := range waiters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				k := w*rounds + r
				ch, remove, ok := s.Add(k, 1)
				if !ok {
					t.Errorf("Add %d refused", k)
					return
				}
				wg.Add(2)
				go func() { defer wg.Done(); s.Deliver(k, k) }()
				go func() { defer wg.Done(); s.Deliver(-k-1, k) }() // nobody waits there
				if v := <-ch; v != k {
					t.Errorf("waiter %d got %d", k, v)
				}
				remove()
				s.Deliver(k, k) // after remove: dropped
			}
		}()
	}
	wg.Wait()
	if n := s.Len(); n != 0 {
		t.Fatalf("Len %d after every waiter left, want 0", n)
	}
}

func TestWaiting(t *testing.T) {
	s := New[uint64, int](4)
	if s.Waiting(1) {
		t.Fatal("Waiting on an empty set")
	}
	_, remove, _ := s.Add(1, 1)
	if !s.Waiting(1) || s.Waiting(2) {
		t.Fatal("Waiting does not match the registrations")
	}
	remove()
	if s.Waiting(1) {
		t.Fatal("Waiting after remove")
	}
}
