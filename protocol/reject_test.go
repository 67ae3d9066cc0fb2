package protocol

import (
	"bytes"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"
)

// hostileBody is a body a conforming encoder never produces. Each one must be
// refused with ErrMalformed for every message type, and cheaply.
type hostileBody struct {
	name string
	body []byte
	// blockOK marks a body whose leading value is a fine Block header: the rest is
	// Block data, so only non-Block types refuse it.
	blockOK bool
	// only, if set, is the one type the body is aimed at; other types skip the
	// unknown key and may accept it.
	only MsgType
}

func rep(hexByte string, n int) string { return strings.Repeat(hexByte, n) }

func hostileBodies(t testing.TB) []hostileBody {
	h := func(name, hx string) hostileBody { return hostileBody{name: name, body: unhex(t, hx)} }
	hello := unhex(t, goldens[0].hex)[HeaderSize:]
	bodies := []hostileBody{
		// Length prefixes that ask msgpack for far more than the body holds.
		h("array32 0xffffffff", "dd ffffffff"),
		h("map32 0xffffffff", "df ffffffff"),
		h("str32 0xffffffff", "db ffffffff"),
		h("bin32 0xffffffff", "c6 ffffffff"),
		h("ext32 0xffffffff", "c9 ffffffff 01"),
		h("ext16 65535", "c8 ffff 01 00"),
		h("ext8 over body", "c7 10 01 00"),
		h("array16 65535", "dc ffff c0 c0"),
		h("map16 65535", "de ffff a1 73 07"),
		h("str16 over body", "da 0100 41"),
		h("str8 over body", "d9 05 41"),
		h("fixarray 15 with 1 item", "9f c0"),
		h("fixmap 15 with no items", "8f"),
		h("array32 inside a field", "81 a1 66 dd ffffffff"),
		h("array16 inside a field, short", "81 a1 66 dc 0100 c0"),
		h("bin32 as a map key", "81 c6 ffffffff"),
		// A count the body could hold but that no frame may carry.
		h("array32 over maxElems", "dd 00010001"+rep("c0", 1<<16+1)),
		h("map16 of 2^16 entries over maxElems", "df 00010001"+rep("c0c0", 1<<16+1)),
		// Structure.
		h("deep arrays", rep("91", maxDepth+2)+"c0"),
		h("deep maps", rep("81a178", maxDepth+2)+"c0"),
		h("deep nesting at the limit, then more", rep("91", 1000)+"c0"),
		h("empty body", ""),
		h("reserved byte c1", "c1"),
		h("truncated uint32", "ce 0000"),
		h("truncated float64", "cb 00000000"),
		h("truncated fixext16", "d8 01 0000"),
		h("truncated length", "c5 00"),
		{name: "truncated hello", body: hello[:len(hello)-1]},
		{name: "hello cut in its map header", body: hello[:1]},
	}
	// Amplification: each 1-byte element would become a whole zero struct.
	only := func(ty MsgType, name, hx string) hostileBody {
		return hostileBody{name: name, body: unhex(t, hx), only: ty}
	}
	bodies = append(bodies,
		only(TypePublish, "publish of 65535 nil files", "81 a1 66 dc ffff"+rep("c0", 0xffff)),
		only(TypeUnpublish, "unpublish of 65535 nil IDs", "81 a1 69 dc ffff"+rep("c0", 0xffff)),
		only(TypeHits, "hits of 65535 empty maps", "81 a1 68 dc ffff"+rep("80", 0xffff)),
		only(TypeHits, "hits of nested nil sources", "82 a1 71 c0 a1 68 9f"+rep("81 a3 737263 dc ffff"+rep("c0", 0xffff), 15)),
		// Repeated keys: each repeat of a list would make a new slice (256 hits a time
		// in 1 MiB: 160 MiB allocated in all). A list key may appear once.
		only(TypeHits, "hits key repeated 4000 times", "de 0fa0"+rep("a1 68 98"+rep("80", 8), 4000)),
		only(TypeHits, "src key repeated in a hit", "81 a1 68 91 de 0fa0"+rep("a3 737263 98"+rep("c0", 8), 4000)),
		only(TypePublish, "publish files twice", "82 a1 66 90 a1 66 90"),
		only(TypeUnpublish, "unpublish IDs after nil and empty", "83 a1 69 c0 a1 69 90 a1 69 90"),
		// The same, just over the per-frame limits (small enough for the fuzz corpus).
		only(TypePublish, "publish of 513 nil files", "81 a1 66 dc 0201"+rep("c0", MaxFilesPerFrame+1)),
		only(TypeUnpublish, "unpublish of 4097 nil IDs", "81 a1 69 dc 1001"+rep("c0", MaxIDsPerFrame+1)),
		only(TypeHits, "hits of 257 empty maps", "81 a1 68 dc 0101"+rep("80", MaxHitsPerFrame+1)),
		only(TypeUserStore, "user_store of 65 nil records", "81 a1 72 dc 0041"+rep("c0", MaxUserRecords+1)),
		only(TypeHits, "hit of 65 nil sources", "81 a1 68 91 81 a3 737263 dc 0041"+rep("c0", MaxSourcesPerHit+1)),
		only(TypeTermPuts, "term_puts of 1025 nil batches", "81 a1 62 dc 0401"+rep("c0", MaxTermBatches+1)),
		only(TypeTermLookup, "term_lookup of 4097 keys", "82 a1 71 c0 a1 6b dc 1001"+rep("01", MaxTermKeys+1)),
		only(TypeTermHolders, "term_holders of 65 nil lists", "81 a1 6c dc 0041"+rep("c0", MaxLookupKeys+1)),
	)
	// Trailing bytes: a whole valid body and then more. For a Block that is data.
	bodies = append(bodies,
		hostileBody{name: "trailing byte", body: append(bytes.Clone(hello), 0x00), blockOK: true},
		hostileBody{name: "two values", body: unhex(t, "81a17307 81a17307"), blockOK: true},
	)
	return bodies
}

func allTypes() []MsgType {
	var ts []MsgType
	for ty := MsgType(0); ty < 0xff; ty++ {
		if newMessage(ty) != nil {
			ts = append(ts, ty)
		}
	}
	return ts
}

func TestDecodeRejectsHostileBodies(t *testing.T) {
	for _, hb := range hostileBodies(t) {
		for _, ty := range allTypes() {
			if ty == TypeBlock && hb.blockOK || hb.only != 0 && ty != hb.only {
				continue
			}
			m, err := Decode(ty, hb.body)
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("%s as %s: got %v, %v; want ErrMalformed", hb.name, ty, m, err)
			} else if m != nil {
				t.Errorf("%s as %s: a message with an error", hb.name, ty)
			}
		}
	}
}

// allocBytes is the heap allocated per call of f, averaged over runs.
func allocBytes(runs int, f func()) uint64 {
	f() // warm up pools and msgpack's type caches
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := 0; i < runs; i++ {
		f()
	}
	runtime.ReadMemStats(&after)
	return (after.TotalAlloc - before.TotalAlloc) / uint64(runs)
}

// TestDecodeHostileAllocatesLittle is the point of bounds.go: refusing a hostile
// body costs a few small allocations (the error), not what its lengths ask for.
func TestDecodeHostileAllocatesLittle(t *testing.T) {
	if testing.Short() {
		t.Skip("measures allocations")
	}
	const limit = 4 << 10
	var most uint64
	var mostName string
	defer func() { t.Logf("most: %d bytes (%s)", most, mostName) }()
	for _, hb := range hostileBodies(t) {
		for _, ty := range allTypes() {
			if ty == TypeBlock && hb.blockOK || hb.only != 0 && ty != hb.only {
				continue
			}
			n := allocBytes(20, func() { _, _ = Decode(ty, hb.body) })
			if n > most {
				most, mostName = n, hb.name+" as "+ty.String()
			}
			if n > limit {
				t.Errorf("%s as %s (%d-byte body): %d bytes allocated, want <= %d", hb.name, ty, len(hb.body), n, limit)
			}
		}
	}
}

// TestDecodeAllocationBoundedByBody covers what bounds.go does not refuse outright:
// a list of 65535 empty strings is legal msgpack that validate refuses only after
// decoding. Its cost must stay a small multiple of the body, not of its lengths.
func TestDecodeAllocationBoundedByBody(t *testing.T) {
	if testing.Short() {
		t.Skip("measures allocations")
	}
	tests := []struct {
		name string
		ty   MsgType
		body []byte
	}{
		{"hello with 65535 empty addrs", TypeHello,
			unhex(t, "84 a2 7630 01 a2 7631 01 a1 72 01 a1 61 dc ffff"+rep("a0", 0xffff))},
		{"hit with 64 sources of 2048 empty addrs", TypeHits,
			unhex(t, "81 a1 68 91 83 a1 6e a1 78 a1 69 c0 a3 737263 dc 0040"+rep("81 a1 61 dc 0800"+rep("a0", 0x800), 64))},
		{"summary filter of 1 MiB", TypeSummary,
			append(unhex(t, "82 a1 64 01 a1 66 c6 000ffff0"), make([]byte, 0xffff0)...)},
	}
	for _, tt := range tests {
		n := allocBytes(5, func() { _, _ = Decode(tt.ty, tt.body) })
		t.Logf("%s: %d bytes allocated for a %d-byte body", tt.name, n, len(tt.body))
		if n > 20*uint64(len(tt.body)) {
			t.Errorf("%s: %d bytes allocated for a %d-byte body", tt.name, n, len(tt.body))
		}
	}
}

// failAfter returns its data, then fails the test if anyone reads further: a frame
// whose header is refused must not have its body read.
type failAfter struct {
	t    *testing.T
	data []byte
}

func (r *failAfter) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		r.t.Errorf("read past the frame header")
		return 0, errors.New("read past the frame header")
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

func header(ty MsgType, n uint32) []byte { return AppendHeader(nil, ty, n) }

func TestReadFrameRefusesOversizeBeforeBody(t *testing.T) {
	for _, n := range []uint32{MaxFrameSize + 1, 1 << 24, 0xffffffff} {
		r := &failAfter{t: t, data: header(TypeSummary, n)}
		ty, body, err := ReadFrame(r, nil)
		if !errors.Is(err, ErrFrameTooLarge) || body != nil || ty != TypeSummary {
			t.Errorf("length %d: got %s, %d bytes, %v; want ErrFrameTooLarge", n, ty, len(body), err)
		}
		if StatusOf(err) != StatusBadRequest {
			t.Errorf("length %d: status %s", n, StatusOf(err))
		}
		r = &failAfter{t: t, data: header(TypeHits, n)}
		if _, err := ReadMessage(r, nil); !errors.Is(err, ErrFrameTooLarge) {
			t.Errorf("ReadMessage, length %d: %v", n, err)
		}
		if n > MaxFrameSize+1 {
			continue
		}
		// Allocation too: refusing the header must not size a buffer.
		hdr := header(TypeSummary, n)
		if a := allocBytes(10, func() { _, _, _ = ReadFrame(bytes.NewReader(hdr), nil) }); a > 1<<10 {
			t.Errorf("length %d: refusing the header allocated %d bytes", n, a)
		}
	}
}

func TestReadFrameLimits(t *testing.T) {
	// Exactly MaxFrameSize is a legal frame size.
	frame := append(header(TypeSummary, MaxFrameSize), make([]byte, MaxFrameSize)...)
	ty, body, err := ReadFrame(bytes.NewReader(frame), nil)
	if err != nil || ty != TypeSummary || len(body) != MaxFrameSize {
		t.Fatalf("MaxFrameSize frame: %s, %d, %v", ty, len(body), err)
	}

	// A clean end of stream between frames is io.EOF; anything cut short is not.
	if _, _, err := ReadFrame(bytes.NewReader(nil), nil); err != io.EOF {
		t.Errorf("empty stream: %v, want io.EOF", err)
	}
	if _, _, err := ReadFrame(bytes.NewReader([]byte{1, 0, 0}), nil); err != io.ErrUnexpectedEOF {
		t.Errorf("cut header: %v, want io.ErrUnexpectedEOF", err)
	}
	cut := append(header(TypePing, 4), 0x81, 0xa1)
	if _, _, err := ReadFrame(bytes.NewReader(cut), nil); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("cut body: %v, want io.ErrUnexpectedEOF", err)
	}
	if _, _, err := ReadFrame(bytes.NewReader(header(TypePing, 4)), nil); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("missing body: %v, want io.ErrUnexpectedEOF", err)
	}

	// A zero-length body reads fine and then fails to decode.
	if _, err := ReadMessage(bytes.NewReader(header(TypePing, 0)), nil); !errors.Is(err, ErrMalformed) {
		t.Errorf("empty body: %v, want ErrMalformed", err)
	}
}

func TestReadFrameReusesBuffer(t *testing.T) {
	frame, _ := AppendFrame(nil, &Ping{Seq: 1})
	buf := make([]byte, 0, 64)
	_, body, err := ReadFrame(bytes.NewReader(frame), buf)
	if err != nil {
		t.Fatal(err)
	}
	if &body[:1][0] != &buf[:1][0] {
		t.Error("a large enough buffer was not reused")
	}
	small := make([]byte, 0, 2)
	_, body, err = ReadFrame(bytes.NewReader(frame), small)
	if err != nil || len(body) != len(frame)-HeaderSize {
		t.Fatalf("small buffer: %d, %v", len(body), err)
	}
}

func TestUnknownType(t *testing.T) {
	body := unhex(t, "81a17307") // a fine Ping body
	for _, ty := range []MsgType{0x00, 0x40, 0x7f, 0xff} {
		m, err := Decode(ty, body)
		if !errors.Is(err, ErrUnknownType) || m != nil {
			t.Errorf("type 0x%02x: %v, %v; want ErrUnknownType", uint8(ty), m, err)
		}
		if StatusOf(err) != StatusBadRequest {
			t.Errorf("type 0x%02x: status %s", uint8(ty), StatusOf(err))
		}
		frame := append(header(ty, uint32(len(body))), body...)
		if _, err := ReadMessage(bytes.NewReader(frame), nil); !errors.Is(err, ErrUnknownType) {
			t.Errorf("ReadMessage, type 0x%02x: %v", uint8(ty), err)
		}
	}
}

// TestDecodeWrongShapes: well-formed msgpack that does not fit the message.
func TestDecodeWrongShapes(t *testing.T) {
	tests := []struct {
		name string
		ty   MsgType
		body string
	}{
		{"not a map", TypePing, "07"},
		{"string for an int", TypePing, "81 a1 73 a1 78"},
		{"int map key", TypePing, "81 01 07"},
		{"map for a string", TypeQuery, "82 a1 74 80 a1 68 00"},
		{"content ID longer than 32", TypeGetMeta, "81 a1 69 c4 21" + rep("00", 33)},
		{"array for bytes", TypeSummary, "83 a1 6c 00 a1 64 01 a1 66 91 01"},
		{"struct as array of wrong length", TypePing, "92 01 02"},
		{"block header not an array or map", TypeBlock, "a3 616263"},
		{"block header of strings", TypeBlock, "92 a1 78 a1 79"},
		{"float64 for a float32 score", TypeHits, "81 a1 68 91 81 a2 7363 cb 3ff0000000000000"},
	}
	for _, tt := range tests {
		if m, err := Decode(tt.ty, unhex(t, tt.body)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, %v; want ErrMalformed", tt.name, m, err)
		}
	}
}

func TestAppendFrameErrors(t *testing.T) {
	prefix := []byte("keep")
	// Too big once encoded: refused, and dst comes back as it was.
	big := &Summary{Level: 0, Depth: 1, Filter: make([]byte, MaxFrameSize)}
	out, err := AppendFrame(bytes.Clone(prefix), big)
	if !errors.Is(err, ErrFrameTooLarge) || !bytes.Equal(out, prefix) {
		t.Errorf("oversize: %q, %v", out, err)
	}
	if err := WriteMessage(io.Discard, big); !errors.Is(err, ErrFrameTooLarge) {
		t.Errorf("WriteMessage oversize: %v", err)
	}
	// Invalid: refused before encoding.
	out, err = AppendFrame(bytes.Clone(prefix), &Request{})
	if !errors.Is(err, ErrMalformed) || !bytes.Equal(out, prefix) {
		t.Errorf("invalid: %q, %v", out, err)
	}
}

// TestValidate: every limit validate enforces, on both sides. A sender refuses to
// encode the message; a receiver given the same body (encoded without validate)
// refuses to decode it.
func TestValidate(t *testing.T) {
	long := func(n int) string { return strings.Repeat("x", n) }
	addrs := func(n int) []string { return make([]string, n) }
	okFile := FileRecord{ID: exCID, Name: "f", Size: 1}
	files := func(n int) []FileRecord {
		f := make([]FileRecord, n)
		for i := range f {
			f[i] = okFile
		}
		return f
	}
	okHit := Hit{FileRecord: okFile, Sources: []Source{{Peer: exPeer}}}
	hits := func(n int) []Hit {
		h := make([]Hit, n)
		for i := range h {
			h[i] = okHit
		}
		return h
	}
	withSources := func(n int) []Hit {
		h := okHit
		h.Sources = make([]Source, n)
		return []Hit{h}
	}
	withScore := func(f float32) []Hit {
		h := okHit
		h.Score = f
		return []Hit{h}
	}
	var zero float32
	tests := []struct {
		name string
		msg  Message
	}{
		{"hello min version 0", &Hello{MinVersion: 0, MaxVersion: 1, Role: RoleLeaf}},
		{"hello min > max", &Hello{MinVersion: 3, MaxVersion: 2, Role: RoleLeaf}},
		{"hello role 0", &Hello{MinVersion: 1, MaxVersion: 1}},
		{"hello role 6", &Hello{MinVersion: 1, MaxVersion: 1, Role: 6}},
		{"hello name 65", &Hello{MinVersion: 1, MaxVersion: 1, Role: RoleLeaf, Name: long(65)}},
		{"hello agent 65", &Hello{MinVersion: 1, MaxVersion: 1, Role: RoleLeaf, Agent: long(65)}},
		{"hello 9 addrs", &Hello{MinVersion: 1, MaxVersion: 1, Role: RoleLeaf, Addrs: addrs(MaxAddrs + 1)}},
		{"hello addr 65", &Hello{MinVersion: 1, MaxVersion: 1, Role: RoleLeaf, Addrs: []string{long(MaxAddrLen + 1)}}},
		{"welcome version 0", &Welcome{Role: RoleLeaf}},
		{"welcome 9 dual addrs", &Welcome{Version: 12, Dual: addrs(MaxAddrs + 1)}},
		{"nat_report 3 proofs", &NATReport{Proofs: []AddrProof{{Addr: "a:1"}, {Addr: "b:1"}, {Addr: "c:1"}}}},
		{"nat_report proof without address", &NATReport{Proofs: []AddrProof{{}}}},
		{"nat_report proof addr 129", &NATReport{Proofs: []AddrProof{{Addr: long(MaxAddrLen + 1)}}}},
		{"nat_status 9 proven", &NATStatus{Proven: addrs(MaxAddrs + 1)}},
		{"welcome observed 65", &Welcome{Version: 1, Observed: long(MaxAddrLen + 1)}},
		{"welcome agent 65", &Welcome{Version: 1, Agent: long(65)}},
		{"welcome 65 addrs", &Welcome{Version: 1, Addrs: addrs(MaxWelcomeAddrs + 1)}},
		{"welcome addr 65", &Welcome{Version: 1, Addrs: []string{long(MaxAddrLen + 1)}}},
		{"error message 1025", &Error{Code: StatusInternal, Message: long(1025)}},
		{"publish 513 files", &Publish{Files: files(MaxFilesPerFrame + 1)}},
		{"publish empty name", &Publish{Files: []FileRecord{{ID: exCID, Size: 1}}}},
		{"publish name 1025", &Publish{Files: []FileRecord{{ID: exCID, Name: long(MaxNameLen + 1)}}}},
		{"publish negative size", &Publish{Files: []FileRecord{{ID: exCID, Name: "f", Size: -1}}}},
		{"publish tag 257", &Publish{Files: []FileRecord{{ID: exCID, Name: "f", Tags: Tags{Album: long(257)}}}}},
		{"unpublish 4097 IDs", &Unpublish{IDs: make([]ContentID, MaxIDsPerFrame+1)}},
		{"query empty", &Query{ID: exQID, Hops: 1}},
		{"query text 257", &Query{ID: exQID, Text: long(MaxQueryLen + 1)}},
		{"query hops 9", &Query{ID: exQID, Text: "x", Hops: MaxHops + 1}},
		{"hits 257", &Hits{ID: exQID, Hits: hits(MaxHitsPerFrame + 1)}},
		{"hit with no source", &Hits{ID: exQID, Hits: withSources(0)}},
		{"hit with 65 sources", &Hits{ID: exQID, Hits: withSources(MaxSourcesPerHit + 1)}},
		{"hit empty name", &Hits{ID: exQID, Hits: []Hit{{Sources: okHit.Sources}}}},
		{"hit source name 65", &Hits{ID: exQID, Hits: []Hit{{FileRecord: okFile, Sources: []Source{{Name: long(65)}}}}}},
		{"hit source 9 addrs", &Hits{ID: exQID, Hits: []Hit{{FileRecord: okFile, Sources: []Source{{Addrs: addrs(9)}}}}}},
		{"hit NaN score", &Hits{ID: exQID, Hits: withScore(zero / zero)}},
		{"hit +Inf score", &Hits{ID: exQID, Hits: withScore(1 / zero)}},
		{"summary depth 0", &Summary{Level: 0, Depth: 0}},
		{"summary level = depth", &Summary{Level: 2, Depth: 2}},
		{"summary depth 9", &Summary{Level: 0, Depth: MaxSummaryLevels + 1}},
		{"summary_want with 2 versions for 1 origin", &SummaryWant{Origins: PeerList{{1}}, Have: VersionList{1, 2}}},
		{"term_puts empty batch", &TermPuts{Batches: []TermBatch{{To: IDPrefix(exSN), Publisher: IDPrefix(exLead)}}}},
		{"term_puts batch without keeper", &TermPuts{Batches: []TermBatch{{Publisher: IDPrefix(exLead), Add: KeyList{1}}}}},
		{"term_puts batch without publisher", &TermPuts{Batches: []TermBatch{{To: IDPrefix(exSN), Del: KeyList{1}}}}},
		{"term_puts 33 hops", &TermPuts{Batches: []TermBatch{{To: IDPrefix(exSN), Publisher: IDPrefix(exLead), Hops: MaxTermHops + 1, Add: KeyList{1}}}}},
		{"term_puts 4097 keys added", &TermPuts{Batches: []TermBatch{{To: IDPrefix(exSN), Publisher: IDPrefix(exLead), Add: make(KeyList, MaxTermKeys+1)}}}},
		{"term_puts 4097 keys removed", &TermPuts{Batches: []TermBatch{{To: IDPrefix(exSN), Publisher: IDPrefix(exLead), Del: make(KeyList, MaxTermKeys+1)}}}},
		{"term_puts 1025 batches", &TermPuts{Batches: func() []TermBatch {
			b := make([]TermBatch, MaxTermBatches+1)
			for i := range b {
				b[i] = TermBatch{To: IDPrefix(exSN), Publisher: IDPrefix(exLead), Add: KeyList{1}}
			}
			return b
		}()}},
		{"term_lookup no keys", &TermLookup{ID: exQID}},
		{"term_lookup 65 keys", &TermLookup{ID: exQID, Keys: make(KeyList, MaxLookupKeys+1)}},
		{"term_holders 65 lists", &TermHolders{ID: exQID, Lists: make([]HolderList, MaxLookupKeys+1)}},
		{"term_holders 257 holders", &TermHolders{ID: exQID, Lists: []HolderList{{Key: 1, Holders: func() KeyList {
			p := make(KeyList, MaxTermHolders+1)
			for i := range p {
				p[i] = IDPrefix(exSN)
			}
			return p
		}()}}}},
		{"term_holders zero holder", &TermHolders{ID: exQID, Lists: []HolderList{{Key: 1, Holders: KeyList{IDPrefix(exSN), 0}}}}},
		{"meta negative size", &Meta{Size: -1, PieceSize: 1}},
		{"meta piece size 0", &Meta{Size: 1}},
		{"meta hashes 33 bytes", &Meta{Size: 1, PieceSize: 1, Hashes: make([]byte, 33)}},
		{"meta too many hashes", &Meta{Size: 1, PieceSize: 1, Hashes: make([]byte, 32*(MaxPieceHashes+1))}},
		{"meta name 1025", &Meta{Size: 1, PieceSize: 1, Name: long(MaxNameLen + 1)}},
		{"request length 0", &Request{Piece: 1}},
		{"request too long", &Request{Length: MaxBlockLen + 1}},
		{"cancel length 0", &Cancel{Piece: 1}},
		{"cancel too long", &Cancel{Length: MaxBlockLen + 1}},
		{"reject length 0", &Reject{Piece: 1}},
		{"reject too long", &Reject{Length: MaxBlockLen + 1}},
		{"members 257", &Members{Members: make([]MemberRecord, MaxMembers+1)}},
		{"member without address", &Members{Members: []MemberRecord{{Key: make([]byte, 32), Sig: make([]byte, 64)}}}},
		{"gone 257", &Members{Gone: make([]MemberGone, MaxMembers+1)}},
		{"gone signature 63", &Members{Gone: []MemberGone{{Sig: make([]byte, 63)}}}},
		{"user_put bad name", &UserPut{Rec: func() UserRecord { r := exUser; r.Name = "Alice"; return r }()}},
		{"user_put short key", &UserPut{Rec: func() UserRecord { r := exUser; r.Key = r.Key[:31]; return r }()}},
		{"user_put 4 supernodes", &UserPut{Rec: func() UserRecord { r := exUser; r.Supernodes = make([]PeerID, 4); return r }()}},
		{"user_put 25 hops", &UserPut{Rec: exUser, Hops: MaxUserHops + 1}},
		{"user_get empty name", &UserGet{}},
		{"user_get down to replica 4", &UserGet{Name: "alice", Down: MaxUserSNs + 1}},
		{"user_get 25 hops", &UserGet{Name: "alice", Hops: MaxUserHops + 1}},
		{"user_reply unsigned record", &UserReply{Rec: &UserRecord{Name: "alice", Key: make([]byte, 32)}}},
		{"user_store 65", &UserStore{Recs: func() []UserRecord {
			r := make([]UserRecord, MaxUserRecords+1)
			for i := range r {
				r[i] = exUser
			}
			return r
		}()}},
		{"deliver path", &Deliver{Name: "../etc/passwd", SHA256: make([]byte, 32)}},
		{"deliver dot-dot", &Deliver{Name: "..", SHA256: make([]byte, 32)}},
		{"deliver control char", &Deliver{Name: "a\nb", SHA256: make([]byte, 32)}},
		{"deliver negative size", &Deliver{Name: "a", Size: -1, SHA256: make([]byte, 32)}},
		{"deliver short hash", &Deliver{Name: "a", SHA256: make([]byte, 31)}},
		{"deliver bad sender", &Deliver{Name: "a", SHA256: make([]byte, 32), From: "Bob"}},
		{"delivered empty", &Delivered{}},
		{"candidacy eligible with a reason", &Candidacy{Eligible: true, Why: "no"}},
		{"candidacy reason too long", &Candidacy{Why: long(MaxWhyLen + 1)}},
		{"promote no leaf limit", &Promote{GossipMS: 1000, TimeoutMS: 4000}},
		{"promote leaf limit too high", &Promote{LeafLimit: MaxLeadLeaves + 1, GossipMS: 1000, TimeoutMS: 4000}},
		{"promote gossip 1 ms", &Promote{LeafLimit: 10, GossipMS: 1, TimeoutMS: 4000}},
		{"promote timeout below gossip", &Promote{LeafLimit: 10, GossipMS: 1000, TimeoutMS: 500}},
		{"promote timeout 11 min", &Promote{LeafLimit: 10, GossipMS: 1000, TimeoutMS: 660000}},
		{"promoted empty", &Promoted{}},
		{"promoted without address", &Promoted{Peer: exLead}},
		{"promoted port 0", &Promoted{Peer: exLead, Addrs: []string{"192.0.2.7:0"}}},
		{"promoted no host", &Promoted{Peer: exLead, Addrs: []string{":6346"}}},
		{"promoted refused with a supernode", &Promoted{Peer: exLead, Addrs: []string{"192.0.2.7:6346"}, Refused: "no"}},
		{"promoted 9 addresses", &Promoted{Peer: exLead, Addrs: func() []string {
			a := make([]string, MaxAddrs+1)
			for i := range a {
				a[i] = "192.0.2.7:6346"
			}
			return a
		}()}},
		{"redirect without peer ID", &Redirect{Target: "192.0.2.7:6346"}},
		{"redirect bad peer ID", &Redirect{Target: "abc@192.0.2.7:6346"}},
		{"redirect without port", &Redirect{Target: exLead.String() + "@192.0.2.7"}},
		{"redirect target too long", &Redirect{Target: exLead.String() + "@" + long(MaxAddrLen) + ":1"}},
		{"redirect reason too long", &Redirect{Target: exLead.String() + "@192.0.2.7:6346", Why: long(MaxWhyLen + 1)}},
		{"bitfield too long", &Bitfield{Bits: make([]byte, MaxPieceHashes/8+1)}},
		{"join NAT type 5", &Join{NAT: 5}},
		{"peers 65", &Peers{Peers: make([]Source, MaxSourcesPerHit+1)}},
		{"peers address too long", &Peers{Peers: []Source{{Addrs: []string{long(MaxAddrLen + 1)}}}}},
	}
	for _, tt := range tests {
		if _, err := AppendFrame(nil, tt.msg); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: encode: %v, want ErrMalformed", tt.name, err)
		}
		body := rawBody(t, tt.msg)
		if m, err := Decode(tt.msg.Type(), body); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: decode: %v, %v; want ErrMalformed", tt.name, m, err)
		} else if StatusOf(err) != StatusBadRequest {
			t.Errorf("%s: status %s", tt.name, StatusOf(err))
		}
	}

	// Block has its own encoding.
	huge := &Block{Data: make([]byte, MaxBlockLen+1)}
	if _, err := AppendFrame(nil, huge); !errors.Is(err, ErrMalformed) {
		t.Errorf("block too long: encode: %v", err)
	}
	body := append([]byte{0x92, 0x00, 0x00}, huge.Data...)
	if _, err := Decode(TypeBlock, body); !errors.Is(err, ErrMalformed) {
		t.Errorf("block too long: decode: %v", err)
	}
}

// TestNestingLimit pins the rule doc.go states: a value may sit inside at most
// maxDepth arrays and maps. The deep value hides under an unknown key of a Ping, which
// a receiver skips, so the body is otherwise valid.
func TestNestingLimit(t *testing.T) {
	body := func(containers int) []byte {
		// The top-level map is one container; the value of "x" adds containers-1 arrays.
		return unhex(t, "82 a1 73 07 a1 78"+rep("91", containers-1)+"c0")
	}
	if m, err := Decode(TypePing, body(maxDepth)); err != nil || m.(*Ping).Seq != 7 {
		t.Errorf("nil inside %d containers: %v, %v", maxDepth, m, err)
	}
	if _, err := Decode(TypePing, body(maxDepth+1)); !errors.Is(err, ErrMalformed) {
		t.Errorf("nil inside %d containers: %v, want ErrMalformed", maxDepth+1, err)
	}
	// Unknown keys are skipped whatever they hold, within the bounds.
	if m, err := Decode(TypePing, unhex(t, "83 a1 73 07 a1 78 c4 03 010203 a1 79 d6 01 00000000")); err != nil || m.(*Ping).Seq != 7 {
		t.Errorf("unknown bin and ext values: %v, %v", m, err)
	}
}
