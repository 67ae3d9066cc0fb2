package content

import (
	"container/list"
	"fmt"
	"os"
	"sync"
)

// handleCache keeps up to max files open for reading, least recently used first out, so
// serving many pieces of a few popular files does not open a file per request. A handle
// evicted while a read is using it closes when that read releases it.
type handleCache struct {
	mu     sync.Mutex
	max    int
	closed bool
	m      map[string]*handle
	lru    list.List // of *handle, most recently used at the front
}

type handle struct {
	f    *os.File
	path string
	refs int
	gone bool // no longer in the cache; close at refs == 0
	elem *list.Element
}

// acquire returns an open handle for path, checking on open that it is still the file e
// describes. Call release when done.
func (c *handleCache) acquire(path string, e *cacheEntry) (*handle, error) {
	c.mu.Lock()
	if h, err := c.getLocked(path); h != nil || err != nil {
		c.mu.Unlock()
		return h, err
	}
	c.mu.Unlock()

	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotShared, err)
	}
	fi, err := f.Stat()
	if err != nil || fi.Size() != e.Size || fi.ModTime().UnixNano() != e.ModTime || inode(fi) != e.Inode {
		f.Close()
		return nil, fmt.Errorf("%w: %s changed since the last scan", ErrNotShared, path)
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if h, err := c.getLocked(path); h != nil || err != nil {
		f.Close() // another reader opened it meanwhile
		return h, err
	}
	h := &handle{f: f, path: path, refs: 1}
	h.elem = c.lru.PushFront(h)
	c.m[path] = h
	for c.lru.Len() > c.max {
		c.removeLocked(c.lru.Back().Value.(*handle))
	}
	return h, nil
}

func (c *handleCache) getLocked(path string) (*handle, error) {
	if c.closed {
		return nil, fmt.Errorf("content: read: %w", os.ErrClosed)
	}
	h, ok := c.m[path]
	if !ok {
		return nil, nil
	}
	h.refs++
	c.lru.MoveToFront(h.elem)
	return h, nil
}

func (c *handleCache) release(h *handle) {
	c.mu.Lock()
	defer c.mu.Unlock()
	h.refs--
	if h.gone && h.refs == 0 {
		h.f.Close()
	}
}

func (c *handleCache) removeLocked(h *handle) {
	delete(c.m, h.path)
	c.lru.Remove(h.elem)
	h.gone = true
	if h.refs == 0 {
		h.f.Close()
	}
}

// drop forgets path, whose file may have been replaced.
func (c *handleCache) drop(path string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if h, ok := c.m[path]; ok {
		c.removeLocked(h)
	}
}

func (c *handleCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	for _, h := range c.m {
		c.removeLocked(h)
	}
}
