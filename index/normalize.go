package index

import (
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// Bounds on what one string can cost. Names come from untrusted leaves, so a hostile
// name must not be able to make the index (or a query) allocate or loop without limit.
const (
	// MaxTokenBytes caps one token; longer words are cut at a rune boundary, the same
	// way at index and at query time, so they still match.
	MaxTokenBytes = 64
	// MaxTokens caps the distinct tokens taken from one string.
	MaxTokens = 32
	// MaxInputBytes caps how much of one string is read.
	MaxInputBytes = 1024
)

// Tokenize returns the search terms of s: Unicode NFKD with combining marks removed,
// lowercased, split on everything that is not a letter or a digit, each term once, in
// order of first appearance. "The Beatles - Hey Jude.mp3" gives the, beatles, hey, jude,
// mp3; "Beyoncé" gives beyonce; "AC/DC" gives ac, dc.
//
// Text without spaces between words (Chinese, Japanese) stays one token per run.
func Tokenize(s string) []string {
	var tk tokenizer
	tk.add(s)
	if len(tk.toks) == 0 {
		return nil
	}
	all := string(tk.buf) // one allocation; the terms are substrings of it
	out := make([]string, len(tk.toks))
	for i, t := range tk.toks {
		out[i] = all[t.start:t.end]
	}
	return out
}

// tokenizer holds tokens in one buffer. Keeping one per writer and per search makes
// tokenising allocation-free once the buffers have grown (the normaliser's iterator is
// large enough that Go would otherwise allocate it on every call).
type tokenizer struct {
	buf  []byte
	toks []span // in buf
	it   norm.Iter
}

// span is one token inside a token buffer.
type span struct{ start, end uint32 }

func (tk *tokenizer) reset() {
	tk.buf = tk.buf[:0]
	tk.toks = tk.toks[:0]
}

func (tk *tokenizer) token(i int) []byte { return tk.buf[tk.toks[i].start:tk.toks[i].end] }

// add appends the tokens of s. A token already held is skipped, so the dedupe scope is
// everything since the last reset (the index adds a file's tags after its name). At most
// MaxTokens tokens are added per call.
func (tk *tokenizer) add(s string) {
	if len(s) > MaxInputBytes {
		s = s[:MaxInputBytes]
	}
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			tk.buf, tk.toks = appendUnicode(tk.buf, tk.toks, &tk.it, s)
			return
		}
	}
	tk.buf, tk.toks = appendASCII(tk.buf, tk.toks, s)
}

func appendASCII(buf []byte, toks []span, s string) ([]byte, []span) {
	added := 0
	start := len(buf)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c-'A' < 26 {
			c += 'a' - 'A'
		}
		if c-'a' < 26 || c-'0' < 10 {
			if len(buf)-start < MaxTokenBytes {
				buf = append(buf, c)
			}
			continue
		}
		if len(buf) > start {
			var ok bool
			if buf, toks, ok = endToken(buf, toks, start); ok {
				if added++; added == MaxTokens {
					return buf, toks
				}
			}
			start = len(buf)
		}
	}
	if len(buf) > start {
		buf, toks, _ = endToken(buf, toks, start)
	}
	return buf, toks
}

func appendUnicode(buf []byte, toks []span, it *norm.Iter, s string) ([]byte, []span) {
	added := 0
	start := len(buf)
	full := false // the current token reached MaxTokenBytes; drop the rest of it
	it.InitString(norm.NFKD, s)
	for !it.Done() {
		seg := it.Next()
		for len(seg) > 0 {
			r, size := utf8.DecodeRune(seg)
			seg = seg[size:]
			word := false
			switch {
			case r < utf8.RuneSelf:
				c := byte(r)
				if c-'A' < 26 {
					c += 'a' - 'A'
					r = rune(c)
				}
				word = c-'a' < 26 || c-'0' < 10
			case unicode.Is(unicode.Mn, r):
				// The accent NFKD split off: dropped, and it does not end the word.
				continue
			default:
				r = unicode.ToLower(r)
				// Spacing marks (Mc) are vowel signs in Indic scripts: part of the word.
				word = unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.Is(unicode.Mc, r)
			}
			if word {
				if !full {
					if len(buf)-start+utf8.RuneLen(r) <= MaxTokenBytes {
						buf = utf8.AppendRune(buf, r)
					} else {
						full = true
					}
				}
				continue
			}
			full = false
			if len(buf) > start {
				var ok bool
				if buf, toks, ok = endToken(buf, toks, start); ok {
					if added++; added == MaxTokens {
						return buf, toks
					}
				}
				start = len(buf)
			}
		}
	}
	if len(buf) > start {
		buf, toks, _ = endToken(buf, toks, start)
	}
	return buf, toks
}

// endToken records buf[start:] as a token unless toks already holds it, in which case
// it is cut from buf again.
func endToken(buf []byte, toks []span, start int) ([]byte, []span, bool) {
	tok := buf[start:]
	for _, t := range toks {
		if int(t.end-t.start) == len(tok) && string(buf[t.start:t.end]) == string(tok) {
			return buf[:start], toks, false
		}
	}
	return buf, append(toks, span{uint32(start), uint32(len(buf))}), true
}
