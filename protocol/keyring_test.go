package protocol

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestTermBatchBounds(t *testing.T) {
	keys := func(n int) KeyList { return make(KeyList, n) }
	for name, b := range map[string]TermBatch{
		"no keeper":         {Publisher: exLead, Add: KeyList{1}},
		"no publisher":      {To: exSN, Add: KeyList{1}},
		"no keys":           {To: exSN, Publisher: exLead},
		"empty key lists":   {To: exSN, Publisher: exLead, Add: KeyList{}, Del: KeyList{}},
		"33 hops":           {To: exSN, Publisher: exLead, Hops: MaxTermHops + 1, Add: KeyList{1}},
		"4097 keys added":   {To: exSN, Publisher: exLead, Add: keys(MaxTermKeys + 1)},
		"4097 keys removed": {To: exSN, Publisher: exLead, Del: keys(MaxTermKeys + 1)},
	} {
		_, err := AppendFrame(nil, &TermPuts{Batches: []TermBatch{b}})
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want malformed", name, err)
		}
	}
	// At the limits, and with only one of the key lists.
	for name, b := range map[string]TermBatch{
		"32 hops":                  {To: exSN, Publisher: exLead, Hops: MaxTermHops, Add: KeyList{1}},
		"4096 keys each way":       {To: exSN, Publisher: exLead, Add: keys(MaxTermKeys), Del: keys(MaxTermKeys)},
		"removals only, the key 0": {To: exSN, Publisher: exLead, Del: KeyList{0}},
	} {
		if _, err := AppendFrame(nil, &TermPuts{Batches: []TermBatch{b}}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestTermBatchWireCheck: a batch without a keeper or a publisher is refused
// as it is decoded, at the first such element, before validate sees the list.
func TestTermBatchWireCheck(t *testing.T) {
	ok := TermBatch{To: exSN, Publisher: exLead, Add: KeyList{1}}
	for name, b := range map[string]TermBatch{
		"no keeper":    {Publisher: exLead, Add: KeyList{1}},
		"no publisher": {To: exSN, Add: KeyList{1}},
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
	for _, b := range []TermBatch{{To: exSN, Publisher: exLead}, {To: exSN, Publisher: exLead, Hops: 255}} {
		if err := b.wireCheck(); err != nil {
			t.Errorf("%+v: wireCheck: %v", b, err)
		}
	}
}

func TestTermLookupAndHoldersBounds(t *testing.T) {
	holders := func(n int) PeerList {
		p := make(PeerList, n)
		for i := range p {
			p[i] = exSN
		}
		return p
	}
	for name, m := range map[string]Message{
		"lookup of no keys":     &TermLookup{ID: exQID},
		"lookup of 65 keys":     &TermLookup{ID: exQID, Keys: make(KeyList, MaxLookupKeys+1)},
		"65 holder lists":       &TermHolders{ID: exQID, Lists: make([]HolderList, MaxLookupKeys+1)},
		"257 holders of a key":  &TermHolders{ID: exQID, Lists: []HolderList{{Key: 1, Holders: holders(MaxTermHolders + 1), More: true}}},
		"the zero peer holding": &TermHolders{ID: exQID, Lists: []HolderList{{Key: 1, Holders: PeerList{exSN, {}}}}},
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
