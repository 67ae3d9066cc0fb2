package protocol

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"testing"
)

func TestSummaryUpdateBounds(t *testing.T) {
	sig := bytes.Repeat([]byte{1}, ed25519.SignatureSize)
	for name, u := range map[string]SummaryUpdate{
		"no origin":            {Ver: 1},
		"no version":           {Origin: exSN},
		"filter and diff":      {Origin: exSN, Ver: 2, Base: 1, Filter: []byte{1}, Diff: []byte{1}, Sig: sig},
		"filter with a base":   {Origin: exSN, Ver: 2, Base: 1, Filter: []byte{1}, Sig: sig},
		"diff without a base":  {Origin: exSN, Ver: 2, Diff: []byte{1}, Sig: sig},
		"diff from the future": {Origin: exSN, Ver: 2, Base: 2, Diff: []byte{1}, Sig: sig},
		"unsigned filter":      {Origin: exSN, Ver: 2, Filter: []byte{1}},
		"signed announcement":  {Origin: exSN, Ver: 2, Sig: sig},
		"filter too big":       {Origin: exSN, Ver: 2, Filter: make([]byte, MaxSummaryFilter+1), Sig: sig},
	} {
		_, err := AppendFrame(nil, &Summaries{Updates: []SummaryUpdate{u}})
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want malformed", name, err)
		}
	}
	if _, err := AppendFrame(nil, &SummaryWant{Origins: PeerList{{}}}); !errors.Is(err, ErrMalformed) {
		t.Errorf("want of the zero peer: %v", err)
	}
}

func TestSummarySignature(t *testing.T) {
	id, err := GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	pub := id.Key.Public().(ed25519.PublicKey)
	filter := []byte("a filter")
	sig := ed25519.Sign(id.Key, SummarySigned(id.ID, 3, 9, filter))
	if err := VerifySummary(pub, id.ID, 3, 9, filter, sig); err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"another filter":      VerifySummary(pub, id.ID, 3, 9, []byte("another"), sig),
		"another version":     VerifySummary(pub, id.ID, 3, 10, filter, sig),
		"another incarnation": VerifySummary(pub, id.ID, 4, 9, filter, sig),
		"another origin":      VerifySummary(pub, exSN, 3, 9, filter, sig),
	} {
		if !errors.Is(err, ErrBadSignature) {
			t.Errorf("%s: %v, want a bad signature", name, err)
		}
	}
}
