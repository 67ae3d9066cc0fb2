package index

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"slices"

	"github.com/cespare/xxhash/v2"
)

// Bloom filter parameters shared by the whole overlay. Filters from different nodes are
// OR-ed together, which only means something when every node sets the same bits for a
// key: so the number of hash functions is a constant rather than a per-filter choice,
// and sizes are powers of two so that a filter folds to any smaller size.
const (
	// K is the number of bits set per key. 7 is optimal near 1% false positives at
	// 10 bits per key.
	K = 7
	// MinBloomBits and MaxBloomBits bound a filter's size: 128 bytes to 1 MiB.
	MinBloomBits = 1 << 10
	MaxBloomBits = 1 << 23

	bloomVersion = 1
	bloomHeader  = 3 // version, log2 of the bits, K
)

// ErrBadBloom is returned by UnmarshalBinary for an encoding it does not accept.
var ErrBadBloom = errors.New("index: bad bloom filter encoding")

// Bloom is a Bloom filter of m bits, m a power of two, with K bit positions per key from
// one 64-bit xxhash by double hashing: position i is (h1 + i*h2) mod m. Because m is a
// power of two, position mod m/2 is the position in a filter of m/2 bits, so OR-ing the
// two halves of a filter gives exactly the filter built at half the size.
//
// The zero Bloom is empty and has no bits; Add sizes it to MinBloomBits.
type Bloom struct {
	words []uint64 // len is a power of two
}

// NewBloom returns a filter sized for expectedKeys keys at a false positive rate of about
// fpRate, rounded up to a power of two (so usually better) and kept within
// [MinBloomBits, MaxBloomBits] (so worse when more keys are expected than 1 MiB holds).
func NewBloom(expectedKeys int, fpRate float64) *Bloom {
	n := float64(max(expectedKeys, 1))
	p := min(max(fpRate, 1e-9), 0.5)
	// m = -k·n / ln(1 - p^(1/k)) solves p = (1 - e^(-k·n/m))^k for m at fixed k.
	m := -K * n / math.Log1p(-math.Pow(p, 1.0/K))
	if m > MaxBloomBits {
		return NewBloomBits(MaxBloomBits)
	}
	return NewBloomBits(int(math.Ceil(m)))
}

// NewBloomBits returns an empty filter of mBits bits rounded up to a power of two and
// kept within [MinBloomBits, MaxBloomBits].
func NewBloomBits(mBits int) *Bloom {
	m := MinBloomBits
	for m < mBits && m < MaxBloomBits {
		m <<= 1
	}
	return &Bloom{words: make([]uint64, m/64)}
}

// Bits returns the filter's size m in bits.
func (b *Bloom) Bits() int { return len(b.words) * 64 }

// Add adds key.
func (b *Bloom) Add(key []byte) { b.addHash(xxhash.Sum64(key)) }

// AddString adds the bytes of s.
func (b *Bloom) AddString(s string) { b.addHash(xxhash.Sum64String(s)) }

// Has reports whether key may have been added; false means it was not.
func (b *Bloom) Has(key []byte) bool { return b.hasHash(xxhash.Sum64(key)) }

// HasString is Has for the bytes of s.
func (b *Bloom) HasString(s string) bool { return b.hasHash(xxhash.Sum64String(s)) }

// HasAll reports whether every key may have been added.
func (b *Bloom) HasAll(keys [][]byte) bool {
	for _, k := range keys {
		if !b.Has(k) {
			return false
		}
	}
	return true
}

// The two halves of the hash are independent, so h2 need not be a second hash; it is
// made odd so that the K positions are distinct modulo any power of two.
func split(h uint64) (h1, h2 uint64) { return h, bits.RotateLeft64(h, 32) | 1 }

func (b *Bloom) addHash(h uint64) {
	if len(b.words) == 0 {
		b.words = make([]uint64, MinBloomBits/64)
	}
	h1, h2 := split(h)
	mask := uint64(len(b.words)*64 - 1)
	for range K {
		x := h1 & mask
		b.words[x>>6] |= 1 << (x & 63)
		h1 += h2
	}
}

func (b *Bloom) hasHash(h uint64) bool {
	if len(b.words) == 0 {
		return false
	}
	h1, h2 := split(h)
	mask := uint64(len(b.words)*64 - 1)
	for range K {
		x := h1 & mask
		if b.words[x>>6]&(1<<(x&63)) == 0 {
			return false
		}
		h1 += h2
	}
	return true
}

// Union ORs o into b, so that b answers for the keys of both. When the sizes differ the
// larger is folded down to the smaller: if b is the larger, b shrinks to o's size (its
// false positive rate rises accordingly); o is never modified.
func (b *Bloom) Union(o *Bloom) {
	if o == nil || len(o.words) == 0 {
		return
	}
	if len(b.words) == 0 {
		b.words = slices.Clone(o.words)
		return
	}
	if len(b.words) > len(o.words) {
		b.fold(len(o.words))
	}
	mask := len(b.words) - 1
	for j, w := range o.words {
		b.words[j&mask] |= w
	}
}

// fold shrinks b to n words by OR-ing every word into its position modulo n.
func (b *Bloom) fold(n int) {
	for j := n; j < len(b.words); j++ {
		b.words[j&(n-1)] |= b.words[j]
	}
	b.words = slices.Clone(b.words[:n]) // release the larger array
}

// Count returns the number of bits set.
func (b *Bloom) Count() int {
	c := 0
	for _, w := range b.words {
		c += bits.OnesCount64(w)
	}
	return c
}

// FillRatio returns the fraction of bits set.
func (b *Bloom) FillRatio() float64 {
	if len(b.words) == 0 {
		return 0
	}
	return float64(b.Count()) / float64(b.Bits())
}

// EstimatedFPR returns the false positive rate the filter has now, from its fill ratio:
// a key that was not added hits K bits that are each set with that probability.
func (b *Bloom) EstimatedFPR() float64 { return math.Pow(b.FillRatio(), K) }

// Clone returns a copy of b.
func (b *Bloom) Clone() *Bloom { return &Bloom{words: slices.Clone(b.words)} }

// Equal reports whether b and o have the same size and bits.
func (b *Bloom) Equal(o *Bloom) bool {
	if b == nil || o == nil {
		return b == o
	}
	return slices.Equal(b.words, o.words)
}

// MarshalBinary encodes b as a version byte (1), log2 of its size in bits, K, and its
// words in little-endian order. The zero Bloom encodes as an empty filter of
// MinBloomBits.
func (b *Bloom) MarshalBinary() ([]byte, error) {
	words := b.words
	if len(words) == 0 {
		words = make([]uint64, MinBloomBits/64)
	}
	p := make([]byte, bloomHeader, bloomHeader+8*len(words))
	p[0] = bloomVersion
	p[1] = byte(bits.TrailingZeros(uint(len(words) * 64)))
	p[2] = K
	for _, w := range words {
		p = binary.LittleEndian.AppendUint64(p, w)
	}
	return p, nil
}

// UnmarshalBinary decodes what MarshalBinary encodes. It checks the header against the
// input's length before allocating, so a short hostile message cannot claim a large
// filter; a filter built with a K other than this overlay's cannot be OR-ed with ours
// and is refused.
func (b *Bloom) UnmarshalBinary(p []byte) error {
	if len(p) < bloomHeader {
		return fmt.Errorf("%w: %d bytes is shorter than the header", ErrBadBloom, len(p))
	}
	if p[0] != bloomVersion {
		return fmt.Errorf("%w: version %d", ErrBadBloom, p[0])
	}
	lg := int(p[1])
	if lg < bits.TrailingZeros(MinBloomBits) || lg > bits.TrailingZeros(MaxBloomBits) {
		return fmt.Errorf("%w: size 2^%d bits is out of range", ErrBadBloom, lg)
	}
	if p[2] != K {
		return fmt.Errorf("%w: %d hash functions, want %d", ErrBadBloom, p[2], K)
	}
	n := (1 << lg) / 64
	if len(p)-bloomHeader != 8*n {
		return fmt.Errorf("%w: %d bytes of bits for a filter of 2^%d bits", ErrBadBloom, len(p)-bloomHeader, lg)
	}
	words := make([]uint64, n)
	for i := range words {
		words[i] = binary.LittleEndian.Uint64(p[bloomHeader+8*i:])
	}
	b.words = words
	return nil
}

// Hash is the hash a filter keeps of key: Has(key) is HasHash(Hash(key)).
// A query probing many filters hashes its keys once.
func Hash(key []byte) uint64 { return xxhash.Sum64(key) }

// HasAllHashes reports whether every key whose Hash is in hs may have been added.
func (b *Bloom) HasAllHashes(hs []uint64) bool {
	for _, h := range hs {
		if !b.hasHash(h) {
			return false
		}
	}
	return true
}

// MaxDiffBits bounds the bit positions one diff may name.
const MaxDiffBits = MaxBloomBits

// Diff encodes the bit positions where b and o differ, for ApplyDiff: the
// gaps between the sorted positions as unsigned varints. A few changed keys
// cost a few bytes each, where the whole filter costs a bit per bit. b and o
// must have the same size.
func (b *Bloom) Diff(o *Bloom) ([]byte, error) {
	if len(b.words) != len(o.words) {
		return nil, fmt.Errorf("%w: diff of filters of %d and %d bits", ErrBadBloom, b.Bits(), o.Bits())
	}
	var out []byte
	last := -1
	for i, w := range b.words {
		for x := w ^ o.words[i]; x != 0; x &= x - 1 {
			pos := i*64 + bits.TrailingZeros64(x)
			out = binary.AppendUvarint(out, uint64(pos-last-1))
			last = pos
		}
	}
	return out, nil
}

// ApplyDiff flips the bits a Diff names, so that b turns into the filter the
// diff was taken against. A diff that names a position twice, past the
// filter's end, or ends inside a varint is refused, and b is left as it was.
func (b *Bloom) ApplyDiff(d []byte) error {
	if err := b.walkDiff(d, nil); err != nil {
		return err
	}
	return b.walkDiff(d, func(p int) { b.words[p>>6] ^= 1 << (p & 63) })
}

// walkDiff checks d and calls fn, if set, with each position it names.
func (b *Bloom) walkDiff(d []byte, fn func(int)) error {
	m := b.Bits()
	last := -1
	for len(d) > 0 {
		gap, n := binary.Uvarint(d)
		if n <= 0 {
			return fmt.Errorf("%w: diff ends inside a number", ErrBadBloom)
		}
		d = d[n:]
		if gap >= uint64(m) || last+1+int(gap) >= m {
			return fmt.Errorf("%w: diff names a bit past the filter's %d", ErrBadBloom, m)
		}
		last += 1 + int(gap)
		if fn != nil {
			fn(last)
		}
	}
	return nil
}

// HashString is Hash of the bytes of s.
func HashString(s string) uint64 { return xxhash.Sum64String(s) }
