package index

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

func TestTokenize(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"The Beatles - Hey Jude.mp3", []string{"the", "beatles", "hey", "jude", "mp3"}},
		{"Beyoncé", []string{"beyonce"}},
		{"AC/DC", []string{"ac", "dc"}},
		{"", nil},
		{" --- ... ", nil},
		{"HEY hey Hey", []string{"hey"}},
		{"Motörhead – Ace of Spades", []string{"motorhead", "ace", "of", "spades"}},
		{"Sigur Rós - Hoppípolla", []string{"sigur", "ros", "hoppipolla"}},
		{"naïve café crème brûlée", []string{"naive", "cafe", "creme", "brulee"}},
		{"Ｆｕｌｌｗｉｄｔｈ ＡＢＣ", []string{"fullwidth", "abc"}},
		{"ﬁnal", []string{"final"}}, // ligature
		{"x²", []string{"x2"}},
		{"Ⅻ", []string{"xii"}},
		{"İstanbul", []string{"istanbul"}},
		{"Straße", []string{"straße"}},
		{"ΩΜΈΓΑ ωμέγα", []string{"ωμεγα"}},
		{"Чайковский", []string{"чаиковскии"}}, // й is и plus a breve
		{"東京事変 - 群青日和", []string{"東京事変", "群青日和"}},
		{"don't stop", []string{"don", "t", "stop"}},
		{"01_track-02.FLAC", []string{"01", "track", "02", "flac"}},
		{"٣ apples", []string{"٣", "apples"}},
		{"a\x00b\xffc", []string{"a", "b", "c"}},
		{"emoji 🎵 music", []string{"emoji", "music"}},
	}
	for _, tt := range tests {
		if got := Tokenize(tt.in); !slices.Equal(got, tt.want) {
			t.Errorf("Tokenize(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestTokenizeCaps(t *testing.T) {
	long := strings.Repeat("a", 100)
	if got := Tokenize(long + " b"); !slices.Equal(got, []string{long[:MaxTokenBytes], "b"}) {
		t.Errorf("long ASCII token: got %q", got)
	}
	// A long token is cut at a rune boundary, never inside a character.
	if got := Tokenize(strings.Repeat("ж", 100)); len(got) != 1 || got[0] != strings.Repeat("ж", MaxTokenBytes/2) {
		t.Errorf("long Cyrillic token: got %q", got)
	}
	if got := Tokenize(strings.Repeat("é", 100)); len(got) != 1 || got[0] != strings.Repeat("e", MaxTokenBytes) {
		t.Errorf("long accented token: got %q", got)
	}
	// Cut tokens still match: the query is cut the same way.
	if a, b := Tokenize(long+"xyz"), Tokenize(long); !slices.Equal(a, b) {
		t.Errorf("cut tokens differ: %q, %q", a, b)
	}

	var words []string
	for i := range 100 {
		words = append(words, "w"+strings.Repeat("x", i%50)+string(rune('a'+i%26)))
	}
	if got := Tokenize(strings.Join(words, " ")); len(got) != MaxTokens {
		t.Errorf("100 distinct words gave %d tokens, want %d", len(got), MaxTokens)
	}
	// Only the first MaxInputBytes are read.
	huge := strings.Repeat("x ", MaxInputBytes/2) + "tail"
	if got := Tokenize(huge); !slices.Equal(got, []string{"x"}) {
		t.Errorf("huge input: got %q", got)
	}
}

// checkTokens checks the properties every tokenisation has.
func checkTokens(t *testing.T, in string, toks []string) {
	t.Helper()
	if len(toks) > MaxTokens {
		t.Fatalf("%q: %d tokens", in, len(toks))
	}
	seen := map[string]bool{}
	for _, tk := range toks {
		if tk == "" || len(tk) > MaxTokenBytes || !utf8.ValidString(tk) || seen[tk] {
			t.Fatalf("%q: bad token %q in %q", in, tk, toks)
		}
		seen[tk] = true
	}
	// Tokens are fixed points: searching for a token finds it.
	if again := Tokenize(strings.Join(toks, " ")); !slices.Equal(again, toks) {
		t.Fatalf("%q: tokens %q tokenize again to %q", in, toks, again)
	}
}

func TestTokenizeFastPathAgrees(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const alphabet = "abcXYZ019 -_./()[]'&!é"
	for range 5000 {
		b := make([]byte, r.IntN(80))
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet)-2)] // ASCII only
		}
		s := string(b)
		var it norm.Iter
		buf1, t1 := appendASCII(nil, nil, s)
		buf2, t2 := appendUnicode(nil, nil, &it, s)
		if string(buf1) != string(buf2) || !slices.Equal(t1, t2) {
			t.Fatalf("%q: ASCII path %q %v, Unicode path %q %v", s, buf1, t1, buf2, t2)
		}
		checkTokens(t, s, Tokenize(s))
	}
}

func FuzzTokenize(f *testing.F) {
	for _, s := range []string{"The Beatles - Hey Jude.mp3", "Beyoncé", "AC/DC", "ＡＢＣ", "İ", "x²", strings.Repeat("ж", 40)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		checkTokens(t, s, Tokenize(s))
	})
}

func TestTokenizeAllocs(t *testing.T) {
	var tk tokenizer
	n := testing.AllocsPerRun(100, func() {
		tk.reset()
		tk.add("The Beatles - Hey Jude.mp3")
		tk.reset()
		tk.add("Beyoncé – Crazy in Love")
	})
	if n != 0 {
		t.Errorf("tokenizer allocates %v times per run", n)
	}
}

func BenchmarkTokenize(b *testing.B) {
	for _, s := range []string{"The Beatles - Hey Jude (Remastered 2009).mp3", "Beyoncé – Crazy in Love (feat. Jay-Z).flac"} {
		b.Run(s[:7], func(b *testing.B) {
			var tk tokenizer
			for range b.N {
				tk.reset()
				tk.add(s)
			}
		})
	}
}
