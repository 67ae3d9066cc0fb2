package content

import (
	"fmt"
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
