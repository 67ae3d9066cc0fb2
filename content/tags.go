package content

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf8"

	"github.com/dhowden/tag"
	"github.com/supernet-p2p/supernet/protocol"
)

// maxTagLen caps each tag string: tags go into indexes and onto the wire, and a broken or
// hostile tag must not carry megabytes there.
const maxTagLen = 256

var audioExts = map[string]bool{
	".mp3": true, ".m4a": true, ".mp4": true, ".aac": true,
	".flac": true, ".ogg": true, ".opus": true, ".oga": true,
}

// isAudio reports whether path has an extension worth reading tags from.
func isAudio(path string) bool {
	return audioExts[strings.ToLower(filepath.Ext(path))]
}

// ReadTags reads the media tags (ID3v1/v2, MP4, FLAC, Ogg) of the file at path. A file in
// a format the tag reader does not know, or with no tags, returns an error; Share.Scan
// treats any error as "no tags".
func ReadTags(path string) (t protocol.Tags, err error) {
	f, err := os.Open(path)
	if err != nil {
		return t, err
	}
	defer f.Close()
	// The tag reader parses arbitrary bytes from files we may have downloaded; a panic in it
	// must cost one file its tags, not the daemon.
	defer func() {
		if r := recover(); r != nil {
			t, err = protocol.Tags{}, fmt.Errorf("content: tag reader panicked on %s: %v", path, r)
		}
	}()
	if err := checkTagInput(f); err != nil {
		return t, fmt.Errorf("content: read tags of %s: %w", path, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return t, err
	}
	m, err := tag.ReadFrom(f)
	if err != nil {
		return t, fmt.Errorf("content: read tags of %s: %w", path, err)
	}
	t = protocol.Tags{
		Title:  cleanTag(m.Title()),
		Artist: cleanTag(m.Artist()),
		Album:  cleanTag(m.Album()),
		Genre:  cleanTag(m.Genre()),
		Year:   m.Year(),
	}
	if t.Year < 0 || t.Year > 9999 {
		t.Year = 0
	}
	return t, nil
}

// cleanTag makes a tag fit to index and send: valid UTF-8, no padding NULs or control
// characters, bounded length.
func cleanTag(s string) string {
	s = strings.ToValidUTF8(s, "")
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if len(s) > maxTagLen {
		cut := maxTagLen
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = strings.TrimSpace(s[:cut])
	}
	return s
}

// errUnsafeTags marks a file whose metadata would make the tag reader allocate
// what a length field says rather than what the file holds.
var errUnsafeTags = errors.New("metadata with an impossible length; tags not read")

// checkTagInput guards the tag reader, which sizes a picture's buffer from a
// 32-bit length in the file: a FLAC PICTURE block (or an Ogg comment carrying
// one) could ask for 4 GiB. FLAC picture lengths are checked against their
// block; Ogg files with embedded pictures are not read for tags at all.
func checkTagInput(f *os.File) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	size := fi.Size()
	var magic [4]byte
	if _, err := f.ReadAt(magic[:], 0); err != nil {
		return nil // too short to be FLAC or Ogg; the reader will say what it is
	}
	switch string(magic[:]) {
	case "fLaC":
		return checkFLAC(f, size)
	case "OggS":
		head := make([]byte, min(size, 1<<20))
		n, _ := f.ReadAt(head, 0)
		if bytes.Contains(bytes.ToLower(head[:n]), []byte("metadata_block_picture=")) {
			return fmt.Errorf("%w: Ogg file with an embedded picture", errUnsafeTags)
		}
	}
	return nil
}

// maxPictureBlock bounds the FLAC PICTURE block we are willing to parse.
const maxPictureBlock = 16 << 20

func checkFLAC(f *os.File, size int64) error {
	pos := int64(4)
	for i := 0; i < 1024; i++ {
		var h [4]byte
		if _, err := f.ReadAt(h[:], pos); err != nil {
			return fmt.Errorf("%w: truncated FLAC block header", errUnsafeTags)
		}
		last, typ := h[0]&0x80 != 0, h[0]&0x7f
		n := int64(h[1])<<16 | int64(h[2])<<8 | int64(h[3])
		if pos+4+n > size {
			return fmt.Errorf("%w: FLAC block of %d bytes past the end of the file", errUnsafeTags, n)
		}
		if typ == 6 { // PICTURE
			if n > maxPictureBlock {
				return fmt.Errorf("%w: FLAC picture block of %d bytes", errUnsafeTags, n)
			}
			b := make([]byte, n)
			if _, err := f.ReadAt(b, pos+4); err != nil {
				return err
			}
			if !pictureFits(b) {
				return fmt.Errorf("%w: FLAC picture lengths exceed their block", errUnsafeTags)
			}
		}
		pos += 4 + n
		if last {
			return nil
		}
	}
	return fmt.Errorf("%w: too many FLAC metadata blocks", errUnsafeTags)
}

// pictureFits checks the nested lengths of a PICTURE block: picture type, MIME
// type, description, four dimensions, then the data, each within the block.
func pictureFits(b []byte) bool {
	p := 4                                   // picture type
	for _, skipAfter := range []int{0, 16} { // MIME; description then 16 bytes of sizes
		if len(b)-p < 4 {
			return false
		}
		l := int(binary.BigEndian.Uint32(b[p:]))
		p += 4
		if l > len(b)-p {
			return false
		}
		p += l + skipAfter
	}
	if len(b)-p < 4 {
		return false
	}
	return int(binary.BigEndian.Uint32(b[p:])) <= len(b)-p-4
}
