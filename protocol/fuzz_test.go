package protocol

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// FuzzDecode feeds arbitrary bodies to Decode. A body must be refused with
// ErrMalformed or ErrUnknownType, or decode to a valid message that encodes and
// decodes again to the same value. Re-encoding need not give back the input bytes
// (a receiver accepts unknown keys, wider ints, short IDs), but the canonical
// encoding is a fixed point: encoding the second decode gives the same frame.
//
// The seed corpus is testdata/fuzz/FuzzDecode: a valid encoding of every message
// type and the hostile bodies of reject_test.go. go test -run TestWriteFuzzCorpus
// -update-corpus rewrites it.
func FuzzDecode(f *testing.F) {
	f.Fuzz(func(t *testing.T, typ byte, body []byte) {
		if len(body) > MaxFrameSize {
			return // ReadFrame refuses it before Decode sees it
		}
		in := bytes.Clone(body)
		m, err := Decode(MsgType(typ), body)
		if !bytes.Equal(in, body) {
			t.Fatal("Decode modified its input")
		}
		if err != nil {
			if m != nil {
				t.Fatalf("a message and an error: %#v, %v", m, err)
			}
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnknownType) {
				t.Fatalf("error is neither ErrMalformed nor ErrUnknownType: %v", err)
			}
			if StatusOf(err) != StatusBadRequest {
				t.Fatalf("status %s for %v", StatusOf(err), err)
			}
			return
		}
		if m.Type() != MsgType(typ) {
			t.Fatalf("decoded a %s from a %s frame", m.Type(), MsgType(typ))
		}
		if b, ok := m.(*Block); ok {
			b.Data = bytes.Clone(b.Data) // own it, so the checks below cannot alias body
		}

		frame, err := AppendFrame(nil, m)
		if errors.Is(err, ErrFrameTooLarge) {
			return // canonical IDs are longer than short ones; fine at the limit
		}
		if err != nil {
			t.Fatalf("decoded a message that does not encode: %#v: %v", m, err)
		}
		if frame[0] != typ || binary.BigEndian.Uint32(frame[1:]) != uint32(len(frame)-HeaderSize) {
			t.Fatalf("bad header % x for a %d-byte frame", frame[:HeaderSize], len(frame))
		}
		m2, err := ReadMessage(bytes.NewReader(frame), nil)
		if err != nil {
			t.Fatalf("re-encoded %s does not decode: %v\n%x", m.Type(), err, frame)
		}
		if !sameMessage(m, m2) {
			t.Fatalf("round trip changed the message\nfirst  %#v\nsecond %#v", m, m2)
		}
		frame2, err := AppendFrame(nil, m2)
		if err != nil || !bytes.Equal(frame, frame2) {
			t.Fatalf("canonical encoding is not a fixed point: %v\n%x\n%x", err, frame, frame2)
		}
	})
}

var updateCorpus = flag.Bool("update-corpus", false, "rewrite testdata/fuzz/FuzzDecode from the goldens and hostile bodies")

const corpusDir = "testdata/fuzz/FuzzDecode"

// corpusEntry is a seed file in the go test fuzz v1 format.
func corpusEntry(typ MsgType, body []byte) []byte {
	// The same verbs cmd/go uses when it writes a crasher.
	return fmt.Appendf(nil, "go test fuzz v1\nbyte(%q)\n[]byte(%q)\n", byte(typ), body)
}

func seedName(prefix, name string) string {
	r := strings.NewReplacer(" ", "_", "/", "_", ",", "", "^", "", "(", "", ")", "", "=", "")
	return prefix + "_" + r.Replace(name)
}

// TestWriteFuzzCorpus rewrites the seed corpus with -update-corpus; it keeps any
// other file there (crashers the fuzzer found).
func TestWriteFuzzCorpus(t *testing.T) {
	if !*updateCorpus {
		t.Skip("run with -update-corpus to rewrite the seed corpus")
	}
	if err := os.MkdirAll(corpusDir, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name string, typ MsgType, body []byte) {
		if err := os.WriteFile(filepath.Join(corpusDir, name), corpusEntry(typ, body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, g := range goldens {
		frame := unhex(t, g.hex)
		write(seedName("valid", g.name), g.msg.Type(), frame[HeaderSize:])
	}
	for _, hb := range hostileBodies(t) {
		if len(hb.body) > 5<<10 {
			continue // the long ones make the fuzzer slow; the short ones carry the same tricks
		}
		typ := hb.only
		if typ == 0 {
			typ = TypeHits
		}
		write(seedName("hostile", hb.name), typ, hb.body)
	}
	write("hostile_unknown_type", 0x10, unhex(t, "81a17307"))
}

// TestFuzzCorpusCoversEveryType keeps the checked-in corpus honest: every message
// type has at least one seed that decodes.
func TestFuzzCorpusCoversEveryType(t *testing.T) {
	entries, err := os.ReadDir(corpusDir)
	if err != nil {
		t.Fatal(err)
	}
	decoded := map[MsgType]bool{}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(corpusDir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		typ, body, err := parseCorpusEntry(string(b))
		if err != nil {
			t.Errorf("%s: %v", e.Name(), err)
			continue
		}
		if _, err := Decode(typ, body); err == nil {
			decoded[typ] = true
		} else if strings.HasPrefix(e.Name(), "valid_") {
			t.Errorf("%s does not decode: %v", e.Name(), err)
		}
	}
	for _, typ := range allTypes() {
		if !decoded[typ] {
			t.Errorf("no seed decodes as %s", typ)
		}
	}
}

// parseCorpusEntry reads the two-value files this package's corpus holds.
func parseCorpusEntry(s string) (MsgType, []byte, error) {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) != 3 || lines[0] != "go test fuzz v1" ||
		!strings.HasPrefix(lines[1], "byte(") || !strings.HasPrefix(lines[2], "[]byte(") {
		return 0, nil, errors.New("not a (byte, []byte) corpus file")
	}
	r, _, _, err := strconv.UnquoteChar(strings.TrimSuffix(strings.TrimPrefix(lines[1], "byte('"), "')"), '\'')
	if err != nil || r > 0xff {
		return 0, nil, fmt.Errorf("bad byte line %q", lines[1])
	}
	body, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[2], "[]byte("), ")"))
	if err != nil {
		return 0, nil, fmt.Errorf("bad []byte line: %v", err)
	}
	return MsgType(r), []byte(body), nil
}
