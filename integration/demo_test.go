package integration

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestDemo runs the README's quickstart demo and checks what it shows: the search
// from the far supernode finds both copies of the song and the tag-only match,
// asking only the supernode that holds them, and the download is byte-identical.
func TestDemo(t *testing.T) {
	binaries(t)
	r := runBinary(t, 90*time.Second, nil, built.demo, "--dir", shortTempDir(t))
	if r.code != 0 {
		t.Fatalf("demo failed:\n%s", r)
	}
	out := r.stdout + r.stderr
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`The Beatles - Hey Jude\.mp3\s+3\.0 MiB\s+2\s+[0-9a-f]{64}`),
		regexp.MustCompile(`track07\.mp3\s+\[Wilson Pickett - Hey Jude\]`),
		regexp.MustCompile(`2 results from 2 supernodes`),
		regexp.MustCompile(`byte-identical to alice's copy`),
		regexp.MustCompile(`Reflexive address \(STUN\):\s+127\.0\.0\.1:\d+`),
	} {
		if !want.MatchString(out) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("demo output:\n%s", strings.TrimSpace(out))
	}
}
