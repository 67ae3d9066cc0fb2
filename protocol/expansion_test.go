package protocol

import (
	"encoding/binary"
	"reflect"
	"strings"
	"testing"
)

// Bounds of what decoding costs, stated in doc.go ("Bounds"): a body of n
// bytes makes Decode allocate at most maxExpansion*n + expansionSlack bytes,
// whatever the message type and however the body is built.
const (
	maxExpansion   = 16
	expansionSlack = 8 << 10
)

// listCaps are the decode-time caps of the lists in messages (see init in
// bounds.go); a list type missing here has no cap, which the test reports.
var listCaps = map[reflect.Type]int{
	reflect.TypeOf([]Hit(nil)):           MaxHitsPerFrame,
	reflect.TypeOf([]Source(nil)):        MaxSourcesPerHit,
	reflect.TypeOf([]FileRecord(nil)):    MaxFilesPerFrame,
	reflect.TypeOf([]ContentID(nil)):     MaxIDsPerFrame,
	reflect.TypeOf([]MemberRecord(nil)):  MaxMembers,
	reflect.TypeOf([]MemberGone(nil)):    MaxMembers,
	reflect.TypeOf([]TreeEntry(nil)):     MaxMembers,
	reflect.TypeOf([]DigestEntry(nil)):   MaxDigest,
	reflect.TypeOf([]UserRecord(nil)):    MaxUserRecords,
	reflect.TypeOf(Chain(nil)):           MaxChain,
	reflect.TypeOf([]PeerID(nil)):        MaxUserSNs,
	reflect.TypeOf(AddrList(nil)):        MaxAddrs,
	reflect.TypeOf(ProofList(nil)):       MaxProofs,
	reflect.TypeOf(SupernodeList(nil)):   MaxWelcomeAddrs,
	reflect.TypeOf([]SummaryUpdate(nil)): MaxSummaryUpdates,
	reflect.TypeOf(PeerList(nil)):        MaxSummaryWants,
	reflect.TypeOf(VersionList(nil)):     MaxSummaryWants,
	reflect.TypeOf([]TermBatch(nil)):     MaxTermBatches,
	reflect.TypeOf(KeyList(nil)):         MaxTermKeys,
	reflect.TypeOf([]HolderList(nil)):    MaxLookupKeys,
}

// worst builds msgpack bodies that fill every list to its cap with the
// smallest elements the decoder takes (IDs and keys non-zero, required
// strings set), nested lists too, so decoding them allocates as much as a
// body of their size can make it allocate.
type worst struct {
	t     *testing.T
	empty bool    // strings in lists are "" rather than one byte
	scale float64 // share of each cap filled, to fit the frame limit
}

func (w *worst) value(b []byte, t reflect.Type, tag string) []byte {
	switch t.Kind() {
	case reflect.Pointer:
		return w.value(b, t.Elem(), tag)
	case reflect.Struct:
		return w.fields(b, t)
	case reflect.String:
		if w.empty && tag != "n" && tag != "u" {
			return append(b, 0xa0) // names are required; anything else may be empty
		}
		return append(b, 0xa1, 'x')
	case reflect.Bool:
		return append(b, 0xc2)
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Int, reflect.Int64:
		return append(b, 0x01)
	case reflect.Float32, reflect.Float64:
		return append(b, 0x00)
	case reflect.Array: // IDs: full size, not zero
		n := t.Len()
		b = append(b, 0xc4, byte(n))
		for range n {
			b = append(b, 0x01)
		}
		return b
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			n := map[string]int{"k": 32, "s": 64, "h": 32}[tag] // keys, signatures, hashes
			b = append(b, 0xc4, byte(n))
			for range n {
				b = append(b, 0x01)
			}
			return b
		}
		limit, ok := listCaps[t]
		if !ok {
			w.t.Errorf("list type %s has no decode cap", t)
			limit = 1
		}
		n := max(1, int(float64(limit)*w.scale))
		b = append(b, 0xdc, byte(n>>8), byte(n))
		for range n {
			b = w.value(b, t.Elem(), "")
		}
		return b
	}
	w.t.Fatalf("no worst value for %s", t)
	return nil
}

// fields encodes a struct as the map of all its msgpack fields.
func (w *worst) fields(b []byte, t reflect.Type) []byte {
	type field struct {
		name string
		typ  reflect.Type
	}
	var fs []field
	var walk func(reflect.Type)
	walk = func(t reflect.Type) {
		for i := range t.NumField() {
			f := t.Field(i)
			tag, opts, _ := strings.Cut(f.Tag.Get("msgpack"), ",")
			switch {
			case tag == "-" || !f.IsExported():
			case strings.Contains(opts, "inline"):
				walk(f.Type)
			default:
				fs = append(fs, field{tag, f.Type})
			}
		}
	}
	walk(t)
	b = append(b, 0xde, 0, byte(len(fs)))
	for _, f := range fs {
		b = append(b, 0xa0|byte(len(f.name)))
		b = append(b, f.name...)
		b = w.value(b, f.typ, f.name)
	}
	return b
}

// TestDecodeExpansion walks every message type with bodies that fill its
// lists to their caps with the cheapest elements, and checks what Decode
// allocates against the bound the spec states.
func TestDecodeExpansion(t *testing.T) {
	if testing.Short() {
		t.Skip("measures allocations")
	}
	var worstRatio float64
	var worstName string
	for _, ty := range allTypes() {
		if ty == TypeBlock {
			continue // its data aliases the body; the header is two integers
		}
		for _, empty := range []bool{false, true} {
			w := &worst{t: t, empty: empty, scale: 1}
			typ := reflect.TypeOf(newMessage(ty)).Elem()
			var body []byte
			for {
				body = w.fields(nil, typ)
				if len(body) <= MaxFrameSize {
					break
				}
				w.scale /= 2
			}
			n := allocBytes(3, func() { _, _ = Decode(ty, body) })
			ratio := float64(n) / float64(len(body))
			name := ty.String()
			if empty {
				name += " (empty strings)"
			}
			t.Logf("%-28s %8d-byte body, lists at %5.1f%% of their caps: %9d bytes allocated, %5.2f per byte",
				name, len(body), 100*w.scale, n, ratio)
			if ratio > worstRatio {
				worstRatio, worstName = ratio, name
			}
			if n > maxExpansion*uint64(len(body))+expansionSlack {
				t.Errorf("%s: %d bytes allocated for a %d-byte body, over %d per byte + %d",
					name, n, len(body), maxExpansion, expansionSlack)
			}
		}
	}
	t.Logf("most per byte: %.2f (%s); the bound is %d per byte + %d", worstRatio, worstName, maxExpansion, expansionSlack)
}

// The builder itself: its bodies are what they claim (a Hits body fills
// 256 hits), so the test above measures full lists.
func TestWorstBodyFillsLists(t *testing.T) {
	w := &worst{t: t, scale: 1.0 / 64}
	body := w.fields(nil, reflect.TypeOf(Hits{}))
	m, err := Decode(TypeHits, body)
	if err != nil {
		t.Fatalf("worst hits body does not decode: %v", err)
	}
	h := m.(*Hits)
	if len(h.Hits) != MaxHitsPerFrame/64 || len(h.Hits[0].Sources) != 1 || len(h.Hits[0].Sources[0].Addrs) != 1 {
		t.Fatalf("%d hits, %d sources, %d addresses", len(h.Hits), len(h.Hits[0].Sources), len(h.Hits[0].Sources[0].Addrs))
	}
	_ = binary.BigEndian
}
