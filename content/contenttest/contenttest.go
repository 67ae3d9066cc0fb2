// Package contenttest makes media files for tests and demos: small, deterministic, and
// tagged the way real players tag them, so tag reading and search can be exercised without
// shipping audio. The audio itself is noise behind valid-looking MPEG frame headers; it
// is not meant to play.
package contenttest

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"unicode/utf16"
)

// mpegFrameHeader is MPEG-1 Layer III, 128 kbit/s, 44.1 kHz, no padding, no CRC, stereo;
// such a frame is 417 bytes long, header included.
var mpegFrameHeader = [4]byte{0xFF, 0xFB, 0x90, 0x64}

const mpegFrameLen = 417

// WriteID3v2MP3 writes to path an MP3 with an ID3v2.3 tag (TIT2, TPE1, TALB) followed by
// audioBytes bytes of MPEG frames filled with pseudo-random data from seed. The same
// arguments always give the same bytes, so the same content ID.
func WriteID3v2MP3(path, title, artist, album string, audioBytes int, seed int64) error {
	if audioBytes < 0 {
		return fmt.Errorf("contenttest: negative audioBytes %d", audioBytes)
	}
	tag, err := ID3v23Tag(map[string]string{"TIT2": title, "TPE1": artist, "TALB": album})
	if err != nil {
		return err
	}
	buf := bytes.NewBuffer(tag)
	buf.Grow(audioBytes)
	rng := rand.New(rand.NewPCG(uint64(seed), 0x5eed5eed))
	frame := make([]byte, mpegFrameLen)
	for left := audioBytes; left > 0; left -= len(frame) {
		copy(frame, mpegFrameHeader[:])
		for i := len(mpegFrameHeader); i < len(frame); i++ {
			frame[i] = byte(rng.Uint32())
		}
		buf.Write(frame[:min(left, len(frame))])
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

// ID3v23Tag encodes an ID3v2.3 tag holding the given text frames (frame ID to value, e.g.
// "TIT2" title, "TPE1" artist, "TALB" album, "TCON" genre, "TYER" year), in sorted frame
// order. Text that fits ISO-8859-1 is stored so; anything else as UTF-16 with a BOM, the
// two encodings v2.3 allows. Empty values are left out.
func ID3v23Tag(frames map[string]string) ([]byte, error) {
	ids := make([]string, 0, len(frames))
	for id := range frames {
		if len(id) != 4 || id[0] != 'T' {
			return nil, fmt.Errorf("contenttest: %q is not an ID3v2.3 text frame ID", id)
		}
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var body bytes.Buffer
	for _, id := range ids {
		v := frames[id]
		if v == "" {
			continue
		}
		data := encodeText(v)
		body.WriteString(id)
		binary.Write(&body, binary.BigEndian, uint32(len(data))) // plain, not syncsafe, in v2.3
		body.Write([]byte{0, 0})                                 // frame flags
		body.Write(data)
	}
	if body.Len() >= 1<<28 {
		return nil, fmt.Errorf("contenttest: tag of %d bytes too large for ID3v2", body.Len())
	}
	n := body.Len()
	hdr := []byte{'I', 'D', '3', 3, 0, 0, // version 2.3.0, no flags
		byte(n >> 21 & 0x7f), byte(n >> 14 & 0x7f), byte(n >> 7 & 0x7f), byte(n & 0x7f)} // syncsafe size
	return append(hdr, body.Bytes()...), nil
}

// encodeText is an ID3v2.3 text frame body: an encoding byte, then the text.
func encodeText(s string) []byte {
	latin1 := make([]byte, 0, len(s)+1)
	for _, r := range s {
		if r > 0xff {
			u := utf16.Encode([]rune(s))
			out := make([]byte, 0, 3+2*len(u))
			out = append(out, 1, 0xFF, 0xFE) // UTF-16, little-endian BOM
			for _, c := range u {
				out = binary.LittleEndian.AppendUint16(out, c)
			}
			return out
		}
		latin1 = append(latin1, byte(r))
	}
	return append([]byte{0}, latin1...)
}
