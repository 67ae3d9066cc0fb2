package protocol

import (
	"encoding/binary"
	"fmt"
	"reflect"

	"github.com/vmihailenco/msgpack/v5"
)

// msgpack v5 sizes a slice, map or string from the length prefix alone, so a 5-byte
// body (dd ff ff ff ff) asks it for 2^32 elements. checkBody walks the encoding first
// and refuses any length that the rest of the body cannot possibly hold (every
// element takes at least one byte), any container over maxElems, and nesting deeper
// than maxDepth. Only bodies that pass are handed to msgpack, so what it allocates
// is bounded by the body size, which ReadFrame has already capped.
//
// Bounded by the body size is not yet small: msgpack turns each 1-byte element (nil,
// an empty map) into a whole zero struct, so without more a 1 MiB Hits body of nested
// nil Sources asks for over 100 MiB. The slices of our own struct types are therefore
// decoded by registerCapped's decoder (see init), which checks the element count against
// the per-frame limit before it makes the slice, and allows each list to be set only
// once. What is left is []string (16 bytes per 1-byte empty string, so at most 16 times
// the body).
const (
	maxDepth = 16
	maxElems = 1 << 16
)

func checkBody(b []byte) error {
	n, err := skipValue(b, 0, 0)
	if err != nil {
		return err
	}
	if n != len(b) {
		return fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(b)-n)
	}
	return nil
}

// checkPrefix is checkBody for a body that is a msgpack value followed by raw bytes;
// it returns where the value ends.
func checkPrefix(b []byte) (int, error) { return skipValue(b, 0, 0) }

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
}

// skipValue returns the offset just past the value at b[p:].
func skipValue(b []byte, p, depth int) (int, error) {
	if depth > maxDepth {
		return 0, malformed("nesting deeper than %d", maxDepth)
	}
	if p >= len(b) {
		return 0, malformed("truncated at byte %d", p)
	}
	c := b[p]
	p++
	switch {
	case c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3:
		return p, nil
	case c&0xf0 == 0x80:
		return skipItems(b, p, 2*int(c&0x0f), depth)
	case c&0xf0 == 0x90:
		return skipItems(b, p, int(c&0x0f), depth)
	case c&0xe0 == 0xa0:
		return skipBytes(b, p, int(c&0x1f))
	}
	switch c {
	case 0xc4, 0xd9: // bin8, str8
		n, p, err := readLen(b, p, 1)
		if err != nil {
			return 0, err
		}
		return skipBytes(b, p, n)
	case 0xc5, 0xda: // bin16, str16
		n, p, err := readLen(b, p, 2)
		if err != nil {
			return 0, err
		}
		return skipBytes(b, p, n)
	case 0xc6, 0xdb: // bin32, str32
		n, p, err := readLen(b, p, 4)
		if err != nil {
			return 0, err
		}
		return skipBytes(b, p, n)
	case 0xc7, 0xc8, 0xc9: // ext8/16/32: length, type byte, data
		w := map[byte]int{0xc7: 1, 0xc8: 2, 0xc9: 4}[c]
		n, p, err := readLen(b, p, w)
		if err != nil {
			return 0, err
		}
		return skipBytes(b, p, n+1)
	case 0xca, 0xce, 0xd2: // float32, uint32, int32
		return skipBytes(b, p, 4)
	case 0xcb, 0xcf, 0xd3: // float64, uint64, int64
		return skipBytes(b, p, 8)
	case 0xcc, 0xd0:
		return skipBytes(b, p, 1)
	case 0xcd, 0xd1:
		return skipBytes(b, p, 2)
	case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8: // fixext 1, 2, 4, 8, 16 plus type byte
		return skipBytes(b, p, 1+(1<<(c-0xd4)))
	case 0xdc, 0xdd: // array16, array32
		n, p, err := readLen(b, p, 2<<(c-0xdc))
		if err != nil {
			return 0, err
		}
		if n > maxElems {
			return 0, malformed("array of %d elements (max %d)", n, maxElems)
		}
		return skipItems(b, p, n, depth)
	case 0xde, 0xdf: // map16, map32
		n, p, err := readLen(b, p, 2<<(c-0xde))
		if err != nil {
			return 0, err
		}
		if n > maxElems {
			return 0, malformed("map of %d entries (max %d)", n, maxElems)
		}
		return skipItems(b, p, 2*n, depth)
	}
	return 0, malformed("invalid type byte 0x%02x", c)
}

func readLen(b []byte, p, width int) (int, int, error) {
	if len(b)-p < width {
		return 0, 0, malformed("truncated length at byte %d", p)
	}
	var n uint64
	switch width {
	case 1:
		n = uint64(b[p])
	case 2:
		n = uint64(binary.BigEndian.Uint16(b[p:]))
	case 4:
		n = uint64(binary.BigEndian.Uint32(b[p:]))
	}
	if n > uint64(len(b)) {
		return 0, 0, malformed("length %d exceeds body of %d bytes", n, len(b))
	}
	return int(n), p + width, nil
}

func skipBytes(b []byte, p, n int) (int, error) {
	if n < 0 || n > len(b)-p {
		return 0, malformed("length %d exceeds the %d bytes left", n, len(b)-p)
	}
	return p + n, nil
}

func skipItems(b []byte, p, n, depth int) (int, error) {
	if n > len(b)-p {
		return 0, malformed("%d items cannot fit in the %d bytes left", n, len(b)-p)
	}
	var err error
	for i := 0; i < n; i++ {
		if p, err = skipValue(b, p, depth+1); err != nil {
			return 0, err
		}
	}
	return p, nil
}

// init registers the capped slice decoders. msgpack keeps decoders in a process-wide
// table, so only slices of this package's own types are registered: nothing else in
// the binary decodes them differently.
func init() {
	registerCapped[[]Hit](MaxHitsPerFrame)
	registerCapped[[]Source](MaxSourcesPerHit)
	registerCapped[[]FileRecord](MaxFilesPerFrame)
	registerCapped[[]ContentID](MaxIDsPerFrame)
	registerCapped[[]MemberRecord](MaxMembers)
	registerCapped[[]MemberGone](MaxMembers)
	registerCapped[[]TreeEntry](MaxMembers)
	registerCapped[[]DigestEntry](MaxDigest)
	registerCapped[[]UserRecord](MaxUserRecords)
	registerCapped[Chain](MaxChain)
	registerCapped[[]PeerID](MaxUserSNs)
	registerCapped[AddrList](MaxAddrs)
	registerCapped[ProofList](MaxProofs)
	registerCapped[SupernodeList](MaxWelcomeAddrs)
	registerCapped[[]SummaryUpdate](MaxSummaryUpdates)
	registerCapped[PeerList](MaxSummaryWants)
	registerCappedUints[VersionList](MaxSummaryWants)
	registerCapped[[]TermBatch](MaxTermBatches)
	registerCappedUints[KeyList](MaxTermKeys)
	registerCapped[[]HolderList](MaxLookupKeys)
}

// wireChecker is an element of a capped list that can tell, right after it
// is decoded, whether it could be valid at all: a zero ID or an empty name
// never is. The list is refused at the first such element, so a body of
// 1-byte elements cannot turn into a slice of large zero values.
type wireChecker interface{ wireCheck() error }

// registerCapped makes msgpack refuse a list of more than limit elements before it
// allocates anything for them, and refuse it at the first element that could not
// be valid (see wireChecker). The slice grows as elements decode, so what it holds
// is paid for by their bytes. It also refuses to decode into a slice that is
// already set: Decode fills a fresh message, so a set slice means its key appeared
// twice in one map, and each repeat would allocate the list again (a 1 MiB body of
// repeated 256-hit lists comes to 160 MiB). nil stays nil.
func registerCapped[S ~[]T, T any](limit int) {
	msgpack.Register(S(nil), nil, func(d *msgpack.Decoder, v reflect.Value) error {
		n, err := listLen(d, v, limit)
		if n < 0 || err != nil {
			return err
		}
		s := make(S, 0, min(n, 8))
		for i := 0; i < n; i++ {
			var x T
			if err := d.DecodeValue(reflect.ValueOf(&x).Elem()); err != nil {
				return err
			}
			if c, ok := any(&x).(wireChecker); ok {
				if err := c.wireCheck(); err != nil {
					return fmt.Errorf("element %d of %s: %w", i, v.Type(), err)
				}
			}
			if s, ok := any(x).(string); ok && s == "" {
				return fmt.Errorf("element %d of %s: %w", i, v.Type(), invalid("empty address"))
			}
			s = append(s, x)
		}
		v.Set(reflect.ValueOf(s))
		return nil
	})
}

// listLen reads the length of a capped list into v: over limit, or into a
// slice already set (a repeated key), it is refused; a nil list sets v to
// nil and gives -1.
func listLen(d *msgpack.Decoder, v reflect.Value, limit int) (int, error) {
	if !v.IsNil() {
		return -1, fmt.Errorf("%s set twice: a key is repeated", v.Type())
	}
	n, err := d.DecodeArrayLen()
	if err != nil {
		return -1, err
	}
	if n > limit {
		return -1, fmt.Errorf("%d elements of %s (max %d)", n, v.Type(), limit)
	}
	if n < 0 {
		v.SetZero()
	}
	return n, nil
}

// registerCappedUints is registerCapped for lists of integers. An integer
// takes one byte of the body and eight of the slice, so the generic decoder,
// which grows the slice as elements come and passes each through reflection,
// would allocate about 40 bytes for each byte of a list of small keys: over
// the bound doc.go states. This one reads each element with DecodeUint64 into
// a slice made once at its final size: at most 8 bytes for each byte of the
// body (which checkBody has seen hold every element), and never over 8*limit.
func registerCappedUints[S ~[]uint64](limit int) {
	msgpack.Register(S(nil), nil, func(d *msgpack.Decoder, v reflect.Value) error {
		n, err := listLen(d, v, limit)
		if n < 0 || err != nil {
			return err
		}
		s := make(S, n)
		for i := range s {
			if s[i], err = d.DecodeUint64(); err != nil {
				return err
			}
		}
		v.Set(reflect.ValueOf(s))
		return nil
	})
}

func (h *Hit) wireCheck() error {
	if len(h.Sources) == 0 {
		return invalid("hit without a source")
	}
	return h.FileRecord.wireCheck()
}

func (f *FileRecord) wireCheck() error {
	if f.ID.IsZero() || f.Name == "" {
		return invalid("file without an ID or a name")
	}
	return nil
}

func (s *Source) wireCheck() error {
	if s.Peer.IsZero() {
		return invalid("source without a peer ID")
	}
	return nil
}

func (c *ContentID) wireCheck() error {
	if c.IsZero() {
		return invalid("zero content ID")
	}
	return nil
}

func (p *PeerID) wireCheck() error {
	if p.IsZero() {
		return invalid("zero peer ID")
	}
	return nil
}

func (m *MemberRecord) wireCheck() error { return m.Check() }
func (r *UserRecord) wireCheck() error   { return r.Check() }
func (c *Cert) wireCheck() error         { return c.Check() }
