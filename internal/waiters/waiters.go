// Package waiters routes replies to the goroutines waiting for them: a waiter
// registers a channel under a request ID, the reader that receives a reply
// delivers it under that ID, and the waiter removes the registration when it
// stops waiting. A reader never blocks on a waiter: a reply nobody waits for,
// or one that finds the channel full, is dropped.
//
// It is not a request table: state a request carries besides its waiter
// (deadlines, where a reply goes on) belongs to the code that owns it.
package waiters

import "sync"

// Set holds the waiters by key, at most max keys at once, so that however
// many requests are started the set stays bounded; a request that finds it
// full is refused rather than queued.
type Set[K comparable, V any] struct {
	max int

	mu sync.Mutex
	m  map[K]chan V
}

// New returns an empty set that holds at most max keys.
func New[K comparable, V any](max int) *Set[K, V] {
	return &Set[K, V]{max: max, m: make(map[K]chan V)}
}

// Add registers a channel with room for buf values under k. remove drops the
// registration and may be called more than once. ok is false, and nothing is
// registered, when k is taken or the set is full: keys are meant to be random,
// so the caller treats a clash as it does a full set, by failing the request.
func (s *Set[K, V]) Add(k K, buf int) (ch <-chan V, remove func(), ok bool) {
	return s.AddAll([]K{k}, buf)
}

// AddAll is Add for a waiter that takes replies to any of several requests:
// one channel is registered under every key, each of which counts towards
// the bound.
func (s *Set[K, V]) AddAll(keys []K, buf int) (ch <-chan V, remove func(), ok bool) {
	c := make(chan V, buf)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.m)+len(keys) > s.max {
		return nil, nil, false
	}
	for _, k := range keys {
		if _, taken := s.m[k]; taken {
			return nil, nil, false
		}
	}
	for _, k := range keys {
		s.m[k] = c
	}
	return c, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, k := range keys {
			// The key may have been registered again by another waiter
			// since: only this registration goes.
			if s.m[k] == c {
				delete(s.m, k)
			}
		}
	}, true
}

// Deliver hands v to the waiter registered under k without blocking. It
// reports false when nobody waits under k or the waiter's channel is full;
// v is dropped then.
func (s *Set[K, V]) Deliver(k K, v V) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.m[k]
	if c == nil {
		return false
	}
	// Sending under the lock means nothing reaches a waiter after its
	// remove returns.
	select {
	case c <- v:
		return true
	default:
		return false
	}
}

// Waiting reports whether a waiter is registered under k: a reader checks it
// before it builds a reply, so that replies nobody asked for cost nothing.
func (s *Set[K, V]) Waiting(k K) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.m[k]
	return ok
}

// Len is the number of keys registered.
func (s *Set[K, V]) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}
