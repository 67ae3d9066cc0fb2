package index

import (
	"math"
	"testing"

	"github.com/supernet-p2p/supernet/protocol"
)

// ScoreOf agrees with what Search gives the same file, and refuses files
// that do not hold every query term.
func TestScoreOfMatchesSearch(t *testing.T) {
	files := []Entry{
		{ContentID: protocol.ContentID{1}, Name: "The Beatles - Hey Jude.mp3"},
		{ContentID: protocol.ContentID{2}, Name: "track07.mp3", Tags: protocol.Tags{Title: "Hey Jude", Artist: "Wilson Pickett"}},
		{ContentID: protocol.ContentID{3}, Name: "Hey Jude (live).flac", Tags: protocol.Tags{Artist: "The Beatles"}},
		{ContentID: protocol.ContentID{4}, Name: "Beyoncé – Halo.m4a"},
	}
	ix := New()
	for _, f := range files {
		ix.Add(1, f)
	}
	for _, q := range []string{"hey jude", "beatles jude", "HEY", "beyonce halo", "jude pickett"} {
		got := map[protocol.ContentID]float64{}
		for _, r := range ix.Search(q, 0) {
			got[r.ContentID] = r.Score
		}
		for _, f := range files {
			s, ok := ScoreOf(q, f.Name, f.Tags)
			want, found := got[f.ContentID]
			if ok != found || (ok && math.Abs(s-want) > 1e-9) {
				t.Errorf("%q on %q: ScoreOf %v %v, Search %v %v", q, f.Name, s, ok, want, found)
			}
		}
	}
	if _, ok := ScoreOf("", "anything.mp3", protocol.Tags{}); ok {
		t.Error("an empty query matched")
	}
}
