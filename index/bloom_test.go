package index_test

import (
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/supernet-p2p/supernet/index"
)

func key(i uint64) []byte { return binary.LittleEndian.AppendUint64(nil, i) }

func TestNewBloomSizing(t *testing.T) {
	tests := []struct {
		keys int
		rate float64
		bits int
	}{
		{0, 0.01, index.MinBloomBits},
		{10, 0.01, index.MinBloomBits},
		{1000, 0.01, 16384},     // 9.6 bits a key rounds up to 2^14
		{100000, 0.01, 1 << 20}, // 958,506 bits rounds up to 2^20
		{100000, 0.1, 1 << 20},  // 5.5 bits a key
		{10_000_000, 0.01, index.MaxBloomBits},
		{1000, 0, 1 << 18}, // the rate is clamped to 1e-9, not an error
		{1000, 2, 4096},    // and to 0.5
	}
	for _, tt := range tests {
		if got := index.NewBloom(tt.keys, tt.rate).Bits(); got != tt.bits {
			t.Errorf("NewBloom(%d, %v).Bits() = %d, want %d", tt.keys, tt.rate, got, tt.bits)
		}
	}
	for _, m := range []int{-5, 0, 1000, 1024, 1025, 1 << 30} {
		got := index.NewBloomBits(m).Bits()
		if got&(got-1) != 0 || got < index.MinBloomBits || got > index.MaxBloomBits || got < min(m, index.MaxBloomBits) {
			t.Errorf("NewBloomBits(%d).Bits() = %d", m, got)
		}
	}
}

func TestBloomNoFalseNegatives(t *testing.T) {
	b := index.NewBloom(10000, 0.01)
	for i := range uint64(10000) {
		b.Add(key(i))
	}
	b.AddString("hey")
	for i := range uint64(10000) {
		if !b.Has(key(i)) {
			t.Fatalf("key %d missing", i)
		}
	}
	if !b.HasString("hey") || !b.Has([]byte("hey")) || !b.HasAll([][]byte{key(1), key(2), []byte("hey")}) {
		t.Fatal("string keys missing")
	}
	if !b.HasAll(nil) {
		t.Fatal("HasAll of no keys is false")
	}

	var zero index.Bloom // empty, sized on first Add
	if zero.Has(key(1)) || zero.Count() != 0 || zero.FillRatio() != 0 {
		t.Fatal("zero Bloom not empty")
	}
	zero.Add(key(1))
	if !zero.Has(key(1)) || zero.Bits() != index.MinBloomBits {
		t.Fatal("zero Bloom did not take a key")
	}
}

// measureFPR adds n keys to a filter sized for n at rate and tests 100,000 others.
func measureFPR(n int, rate float64) (measured, estimated float64, b *index.Bloom) {
	r := rand.New(rand.NewPCG(99, uint64(n)))
	b = index.NewBloom(n, rate)
	for range n {
		b.Add(key(r.Uint64() | 1)) // odd keys in, even keys out
	}
	const probes = 100_000
	fp := 0
	for range probes {
		if b.Has(key(r.Uint64() &^ 1)) {
			fp++
		}
	}
	return float64(fp) / probes, b.EstimatedFPR(), b
}

func TestBloomFalsePositiveRate(t *testing.T) {
	for _, tt := range []struct {
		n    int
		rate float64
	}{{20_000, 0.01}, {100_000, 0.01}, {60_000, 0.05}, {1_000_000, 0.01}} {
		got, est, b := measureFPR(tt.n, tt.rate)
		// Rounding m up to a power of two only lowers the rate (unless the filter hit
		// MaxBloomBits); the estimate from the fill ratio must predict the measurement.
		if b.Bits() < index.MaxBloomBits && got > tt.rate*1.1 || got > est*1.5+0.0005 || got < est/1.5-0.0005 {
			t.Errorf("n=%d rate=%v: measured %.5f, estimated %.5f (%d bits, fill %.3f)", tt.n, tt.rate, got, est, b.Bits(), b.FillRatio())
		}
		t.Logf("n=%d design %.3f: %d bits (%.1f a key), measured FPR %.5f, estimated %.5f", tt.n, tt.rate, b.Bits(), float64(b.Bits())/float64(tt.n), got, est)
	}
}

// A filter folded from a larger one is exactly the filter built at the small size.
func TestBloomFoldEquivalence(t *testing.T) {
	big, small := index.NewBloomBits(1<<16), index.NewBloomBits(1<<12)
	for i := range uint64(500) {
		big.Add(key(i))
		small.Add(key(i))
	}
	// o larger than the receiver: folded on the fly, o left alone.
	got := index.NewBloomBits(1 << 12)
	orig := big.Clone()
	got.Union(big)
	if !got.Equal(small) || !big.Equal(orig) {
		t.Fatal("union with a larger filter differs from the small filter")
	}
	// Receiver larger: it shrinks.
	shrunk := big.Clone()
	shrunk.Union(index.NewBloomBits(1 << 12))
	if shrunk.Bits() != 1<<12 || !shrunk.Equal(small) {
		t.Fatalf("receiver folded to %d bits, equal %v", shrunk.Bits(), shrunk.Equal(small))
	}

	// Union of equal sizes is the filter of both key sets.
	a, b, both := index.NewBloomBits(1<<14), index.NewBloomBits(1<<14), index.NewBloomBits(1<<14)
	for i := range uint64(300) {
		a.Add(key(i))
		both.Add(key(i))
		b.Add(key(i + 1000))
		both.Add(key(i + 1000))
	}
	a.Union(b)
	if !a.Equal(both) {
		t.Fatal("union differs from the filter of both sets")
	}
	var zero index.Bloom
	zero.Union(both)
	if !zero.Equal(both) {
		t.Fatal("union into the zero Bloom")
	}
	zero.Union(nil)
	if !zero.Equal(both) {
		t.Fatal("union with nil changed the filter")
	}
}

func TestBloomCountAndClone(t *testing.T) {
	b := index.NewBloomBits(1024)
	if b.Count() != 0 || b.EstimatedFPR() != 0 {
		t.Fatal("new filter not empty")
	}
	b.Add([]byte("x"))
	if c := b.Count(); c < 1 || c > index.K {
		t.Fatalf("one key set %d bits", c)
	}
	if math.Abs(b.FillRatio()-float64(b.Count())/1024) > 1e-12 {
		t.Fatal("FillRatio")
	}
	c := b.Clone()
	c.Add([]byte("y"))
	if b.Equal(c) || b.Has([]byte("y")) && b.Count() == c.Count() {
		t.Fatal("Clone shares bits")
	}
	var nb *index.Bloom
	if nb.Equal(b) || !nb.Equal(nil) {
		t.Fatal("Equal with nil")
	}
}

func TestBloomMarshal(t *testing.T) {
	b := index.NewBloomBits(1 << 12)
	for i := range uint64(100) {
		b.Add(key(i))
	}
	p, err := b.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if len(p) != 3+(1<<12)/8 || p[0] != 1 || p[1] != 12 || p[2] != index.K {
		t.Fatalf("encoding header % x, %d bytes", p[:3], len(p))
	}
	var got index.Bloom
	if err := got.UnmarshalBinary(p); err != nil || !got.Equal(b) {
		t.Fatalf("round trip: %v, equal %v", err, got.Equal(b))
	}
	var zero index.Bloom
	if p, _ := zero.MarshalBinary(); len(p) != 3+index.MinBloomBits/8 {
		t.Fatalf("zero Bloom encodes to %d bytes", len(p))
	}

	valid := func() []byte { return append([]byte(nil), p...) }
	bad := map[string][]byte{
		"empty":          nil,
		"short header":   {1, 10},
		"version 0":      func() []byte { q := valid(); q[0] = 0; return q }(),
		"version 2":      func() []byte { q := valid(); q[0] = 2; return q }(),
		"too small":      append([]byte{1, 9, index.K}, make([]byte, 64)...),
		"too large":      {1, 24, index.K},
		"huge claim":     {1, 63, index.K, 0, 0},
		"k 6":            func() []byte { q := valid(); q[2] = 6; return q }(),
		"k 0":            func() []byte { q := valid(); q[2] = 0; return q }(),
		"one byte short": valid()[:len(p)-1],
		"one byte long":  append(valid(), 0),
		"size mismatch":  func() []byte { q := valid(); q[1] = 13; return q }(),
	}
	for name, q := range bad {
		before := b.Clone()
		if err := b.UnmarshalBinary(q); !errors.Is(err, index.ErrBadBloom) {
			t.Errorf("%s: err = %v", name, err)
		}
		if !b.Equal(before) {
			t.Errorf("%s: a failed decode changed the filter", name)
		}
	}
}

func FuzzBloomUnmarshal(f *testing.F) {
	for _, bits := range []int{1 << 10, 1 << 11} {
		b := index.NewBloomBits(bits)
		b.AddString("seed")
		p, _ := b.MarshalBinary()
		f.Add(p)
	}
	f.Add([]byte{1, 23, index.K})
	f.Fuzz(func(t *testing.T, p []byte) {
		var b index.Bloom
		if err := b.UnmarshalBinary(p); err != nil {
			if !errors.Is(err, index.ErrBadBloom) {
				t.Fatalf("error %v is not ErrBadBloom", err)
			}
			return
		}
		q, err := b.MarshalBinary()
		if err != nil || string(q) != string(p) {
			t.Fatalf("re-encoding differs: %v", err)
		}
		b.Has(p)
		b.Add(p)
		if !b.Has(p) {
			t.Fatal("added key missing")
		}
		small := index.NewBloomBits(index.MinBloomBits)
		small.Union(&b)
		if !small.Has(p) {
			t.Fatal("key lost in folding")
		}
	})
}

func BenchmarkBloomFPR(b *testing.B) {
	for range b.N {
		got, est, _ := measureFPR(100_000, 0.01)
		b.ReportMetric(got, "fpr")
		b.ReportMetric(est, "est-fpr")
		b.ReportMetric(0.01, "design-fpr")
	}
}
