package index_test

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"sync"
	"testing"

	"github.com/supernet-p2p/supernet/index"
	"github.com/supernet-p2p/supernet/index/indextest"
)

// Leaves share about 100 files each in the benchmarks.
const filesPerLeaf = 100

func heapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func build(ents []index.Entry) *index.Index {
	ix := index.New()
	for i := range ents {
		ix.Add(index.SourceID(i/filesPerLeaf), ents[i])
	}
	return ix
}

// BenchmarkIndexAdd1M indexes a million files per op and reports what the index holds on
// the heap per file, names and tags included (the target is <= 300 bytes).
func BenchmarkIndexAdd1M(b *testing.B) {
	const n = 1_000_000
	b.ReportAllocs()
	var perEntry, perAdd float64
	for range b.N {
		b.StopTimer()
		before := heapAlloc()
		ents := indextest.Names(1, n)
		b.StartTimer()
		ix := build(ents)
		b.StopTimer()
		ents = nil
		after := heapAlloc()
		runtime.KeepAlive(ix)
		perEntry = float64(int64(after)-int64(before)) / n
		b.StartTimer()
	}
	perAdd = float64(b.Elapsed().Nanoseconds()) / float64(b.N) / n
	b.ReportMetric(perEntry, "bytes/entry")
	b.ReportMetric(perAdd, "ns/add")
}

var corpora sync.Map // size -> *corpus, built once per test binary

type corpus struct {
	ix      *index.Index
	queries []string
}

func loadCorpus(n int) *corpus {
	if c, ok := corpora.Load(n); ok {
		return c.(*corpus)
	}
	ents := indextest.Names(1, n)
	c := &corpus{ix: build(ents), queries: indextest.Queries(2, ents, 4096)}
	corpora.Store(n, c)
	return c
}

func benchSearch(b *testing.B, n int) {
	c := loadCorpus(n)
	b.ReportAllocs()
	b.ResetTimer()
	results := 0
	for i := range b.N {
		results += len(c.ix.Search(c.queries[i%len(c.queries)], 0))
	}
	b.ReportMetric(float64(results)/float64(b.N), "results/op")
}

// BenchmarkSearch100k runs queries of one to three words, drawn from the indexed names,
// against 100,000 files.
func BenchmarkSearch100k(b *testing.B) { benchSearch(b, 100_000) }

// BenchmarkSearch100kByTerms splits BenchmarkSearch100k by the number of query words.
func BenchmarkSearch100kByTerms(b *testing.B) {
	c := loadCorpus(100_000)
	by := map[int][]string{}
	for _, q := range c.queries {
		n := len(index.Tokenize(q))
		by[n] = append(by[n], q)
	}
	for n := 1; n <= 3; n++ {
		b.Run(fmt.Sprintf("terms=%d", n), func(b *testing.B) {
			qs := by[n]
			b.ReportAllocs()
			results := 0
			for i := range b.N {
				results += len(c.ix.Search(qs[i%len(qs)], 0))
			}
			b.ReportMetric(float64(results)/float64(b.N), "results/op")
		})
	}
}

// BenchmarkSearch1M is BenchmarkSearch100k against a million files.
func BenchmarkSearch1M(b *testing.B) { benchSearch(b, 1_000_000) }

// BenchmarkSearch100kParallel runs searches on every core at once, as a supernode does
// under its read lock.
func BenchmarkSearch100kParallel(b *testing.B) {
	c := loadCorpus(100_000)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			c.ix.Search(c.queries[i%len(c.queries)], 0)
			i++
		}
	})
}

func BenchmarkBloomHas(b *testing.B) {
	f := index.NewBloom(100_000, 0.01)
	var k [8]byte
	for i := range 100_000 {
		binary.LittleEndian.PutUint64(k[:], uint64(i))
		f.Add(k[:])
	}
	b.ResetTimer()
	for i := range b.N {
		binary.LittleEndian.PutUint64(k[:], uint64(i))
		f.Has(k[:])
	}
}
