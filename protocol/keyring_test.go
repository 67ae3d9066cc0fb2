package protocol

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestTermBatchBounds(t *testing.T) {
	keys := func(n int) KeyList { return make(KeyList, n) }
	for name, b := range map[string]TermBatch{
		"no keeper":         {Publisher: IDPrefix(exLead), Add: KeyList{1}},
		"no publisher":      {To: IDPrefix(exSN), Add: KeyList{1}},
		"no keys":           {To: IDPrefix(exSN), Publisher: IDPrefix(exLead)},
		"empty key lists":   {To: IDPrefix(exSN), Publisher: IDPrefix(exLead), Add: KeyList{}, Del: KeyList{}},
		"33 hops":           {To: IDPrefix(exSN), Publisher: IDPrefix(exLead), Hops: MaxTermHops + 1, Add: KeyList{1}},
		"8 keepers after":   {To: IDPrefix(exSN), Publisher: IDPrefix(exLead), Then: make(KeyList, MaxTermThen+1), Add: KeyList{1}},
		"zero keeper after": {To: IDPrefix(exSN), Publisher: IDPrefix(exLead), Then: KeyList{7, 0}, Add: KeyList{1}},
		"4097 keys added":   {To: IDPrefix(exSN), Publisher: IDPrefix(exLead), Add: keys(MaxTermKeys + 1)},
		"4097 keys removed": {To: IDPrefix(exSN), Publisher: IDPrefix(exLead), Del: keys(MaxTermKeys + 1)},
	} {
		_, err := AppendFrame(nil, &TermPuts{Batches: []TermBatch{b}})
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want malformed", name, err)
		}
	}
	// At the limits, and with only one of the key lists.
	for name, b := range map[string]TermBatch{
		"32 hops":                  {To: IDPrefix(exSN), Publisher: IDPrefix(exLead), Hops: MaxTermHops, Add: KeyList{1}},
		"4096 keys each way":       {To: IDPrefix(exSN), Publisher: IDPrefix(exLead), Add: keys(MaxTermKeys), Del: keys(MaxTermKeys)},
		"removals only, the key 0": {To: IDPrefix(exSN), Publisher: IDPrefix(exLead), Del: KeyList{0}},
	} {
		if _, err := AppendFrame(nil, &TermPuts{Batches: []TermBatch{b}}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestTermBatchWireCheck: a batch without a keeper or a publisher is refused
// as it is decoded, at the first such element, before validate sees the list.
func TestTermBatchWireCheck(t *testing.T) {
	ok := TermBatch{To: IDPrefix(exSN), Publisher: IDPrefix(exLead), Add: KeyList{1}}
	for name, b := range map[string]TermBatch{
		"no keeper":    {Publisher: IDPrefix(exLead), Add: KeyList{1}},
		"no publisher": {To: IDPrefix(exSN), Add: KeyList{1}},
	} {
		if err := b.wireCheck(); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: wireCheck: %v, want malformed", name, err)
		}
		body := rawBody(t, &TermPuts{Batches: []TermBatch{ok, b}})
		if _, err := Decode(TypeTermPuts, body); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "element 1 of") {
			t.Errorf("%s: decode: %v, want element 1 refused", name, err)
		}
	}
	// Hops and empty lists are validate's: the wire check lets them by.
	for _, b := range []TermBatch{{To: IDPrefix(exSN), Publisher: IDPrefix(exLead)}, {To: IDPrefix(exSN), Publisher: IDPrefix(exLead), Hops: 255}} {
		if err := b.wireCheck(); err != nil {
			t.Errorf("%+v: wireCheck: %v", b, err)
		}
	}
}

func TestTermLookupAndHoldersBounds(t *testing.T) {
	holders := func(n int) KeyList {
		p := make(KeyList, n)
		for i := range p {
			p[i] = IDPrefix(exSN)
		}
		return p
	}
	for name, m := range map[string]Message{
		"lookup of no keys":       &TermLookup{ID: exQID},
		"lookup of 65 keys":       &TermLookup{ID: exQID, Keys: make(KeyList, MaxLookupKeys+1)},
		"65 holder lists":         &TermHolders{ID: exQID, Lists: make([]HolderList, MaxLookupKeys+1)},
		"257 holders of a key":    &TermHolders{ID: exQID, Lists: []HolderList{{Key: 1, Holders: holders(MaxTermHolders + 1), More: true}}},
		"the zero prefix holding": &TermHolders{ID: exQID, Lists: []HolderList{{Key: 1, Holders: KeyList{IDPrefix(exSN), 0}}}},
	} {
		if _, err := AppendFrame(nil, m); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want malformed", name, err)
		}
	}
	for name, m := range map[string]Message{
		"lookup of 1 key":   &TermLookup{ID: exQID, Keys: KeyList{0}},
		"lookup of 64 keys": &TermLookup{ID: exQID, Keys: make(KeyList, MaxLookupKeys)},
		"no holder lists":   &TermHolders{ID: exQID},
		"64 empty lists":    &TermHolders{ID: exQID, Lists: make([]HolderList, MaxLookupKeys)},
		"a sample of 256":   &TermHolders{ID: exQID, Lists: []HolderList{{Key: 1, Holders: holders(MaxTermHolders), More: true}}},
	} {
		if _, err := AppendFrame(nil, m); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestKeyListDecode: key lists have their own decoder (registerCappedUints);
// it takes any integer encoding, and refuses what registerCapped refuses.
func TestKeyListDecode(t *testing.T) {
	q := "a1 71 c4 10 0102030405060708090a0b0c0d0e0f10 "
	m, err := Decode(TypeTermLookup, unhex(t, "82 "+q+"a1 6b 95 00 7f ccff cd0100 cf8000000000000000"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := m.(*TermLookup).Keys, (KeyList{0, 0x7f, 0xff, 0x100, 1 << 63}); !reflect.DeepEqual(got, want) {
		t.Errorf("keys %v, want %v", got, want)
	}
	for name, body := range map[string]string{
		"keys twice":         "83 " + q + "a1 6b 91 01 a1 6b 91 02",
		"a string for a key": "82 " + q + "a1 6b 91 a1 78",
		"nil keys":           "82 " + q + "a1 6b c0",
		"4097 keys":          "82 " + q + "a1 6b dc 1001" + rep("01", MaxTermKeys+1),
	} {
		if _, err := Decode(TypeTermLookup, unhex(t, body)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want malformed", name, err)
		}
	}
}

// TestIDPrefix: a supernode's name in term messages is the first 8 bytes of
// its peer ID, big-endian; the other 24 bytes do not count.
func TestIDPrefix(t *testing.T) {
	p := PeerID{0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0xff}
	if got := IDPrefix(p); got != 0x0123456789abcdef {
		t.Errorf("IDPrefix(%s) = %#x, want 0x0123456789abcdef", p, got)
	}
	q := p
	q[8], q[31] = 0, 0x42
	if IDPrefix(q) != IDPrefix(p) {
		t.Errorf("IDPrefix depends on bytes past the 8th")
	}
	for _, c := range []struct {
		p    PeerID
		want uint64
	}{{PeerID{}, 0}, {exSN, 0x2222222222222222}, {exLead, 0x5555555555555555}, {exPeer, 0x3333333333333333}} {
		if got := IDPrefix(c.p); got != c.want {
			t.Errorf("IDPrefix(%s) = %#x, want %#x", c.p, got, c.want)
		}
	}
}

// TestTermPrefixesRoundTrip: ID prefixes are plain uint64s on the wire, in
// their shortest form, from 1 to 2^64-1.
func TestTermPrefixesRoundTrip(t *testing.T) {
	for m, want := range map[Message]string{
		&TermPuts{Batches: []TermBatch{{To: 1, Publisher: 1<<64 - 1, Add: KeyList{5}}}}:              "a174 01 a170 cf ffffffffffffffff",
		&TermHolders{ID: exQID, Lists: []HolderList{{Key: 9, Holders: KeyList{1, 0x80, 1<<64 - 1}}}}: "a168 93 01 cc80 cf ffffffffffffffff",
	} {
		frame, err := AppendFrame(nil, m)
		if err != nil {
			t.Fatalf("%s: %v", m.Type(), err)
		}
		if !bytes.Contains(frame, unhex(t, want)) {
			t.Errorf("%s: %x does not hold %s", m.Type(), frame, want)
		}
		got, err := ReadMessage(bytes.NewReader(frame), nil)
		if err != nil || !reflect.DeepEqual(got, m) {
			t.Errorf("%s: round trip: %#v, %v", m.Type(), got, err)
		}
	}
}
