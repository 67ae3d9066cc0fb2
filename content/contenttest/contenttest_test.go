package contenttest

import (
	"bytes"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
)

func TestWriteID3v2MP3(t *testing.T) {
	dir := t.TempDir()
	a, b, c := filepath.Join(dir, "a.mp3"), filepath.Join(dir, "b.mp3"), filepath.Join(dir, "c.mp3")
	for _, p := range []string{a, b} {
		if err := WriteID3v2MP3(p, "Hi", "Me", "Ø", 1000, 7); err != nil {
			t.Fatal(err)
		}
	}
	if err := WriteID3v2MP3(c, "Hi", "Me", "Ø", 1000, 8); err != nil {
		t.Fatal(err)
	}
	ab, _ := os.ReadFile(a)
	bb, _ := os.ReadFile(b)
	cb, _ := os.ReadFile(c)
	if !bytes.Equal(ab, bb) || bytes.Equal(ab, cb) {
		t.Fatal("same seed must give the same bytes, another seed other bytes")
	}
	// Header, then frames in ID order: TALB "Ø" (Latin-1 0xd8), TIT2 "Hi", TPE1 "Me".
	const tag = "494433030000" + "00000026" +
		"54414c4200000002" + "0000" + "00d8" +
		"5449543200000003" + "0000" + "004869" +
		"5450453100000003" + "0000" + "004d65"
	if got := hex.EncodeToString(ab[:len(tag)/2]); got != tag {
		t.Errorf("tag\n got %s\nwant %s", got, tag)
	}
	audio := ab[len(tag)/2:]
	if len(audio) != 1000 || !bytes.Equal(audio[:4], mpegFrameHeader[:]) || !bytes.Equal(audio[mpegFrameLen:mpegFrameLen+4], mpegFrameHeader[:]) {
		t.Errorf("audio: %d bytes, starting %x", len(audio), audio[:4])
	}
}

func TestID3v23TagUTF16(t *testing.T) {
	got, err := ID3v23Tag(map[string]string{"TIT2": "東"})
	if err != nil {
		t.Fatal(err)
	}
	want := "494433030000" + "0000000f" + "5449543200000005" + "0000" + "01fffe7167"
	if hex.EncodeToString(got) != want {
		t.Errorf("got %x\nwant %s", got, want)
	}
	if _, err := ID3v23Tag(map[string]string{"APIC": "x"}); err == nil {
		t.Error("non-text frame accepted")
	}
}
