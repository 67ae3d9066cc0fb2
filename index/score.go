package index

import (
	"slices"

	"github.com/supernet-p2p/supernet/protocol"
)

// ScoreOf is the score Search would give a file with name and tags for
// query, and whether the file matches it at all (every query term in its name
// or tags). A supernode relaying hits from a neighbour, and a leaf receiving
// them, score them this way themselves rather than trust the sender's score,
// and drop hits that do not match.
func ScoreOf(query, name string, tags protocol.Tags) (float64, bool) {
	q := Tokenize(query)
	if len(q) == 0 {
		return 0, false
	}
	nameToks := Tokenize(clip(name, MaxNameBytes))
	var tagToks []string
	for _, s := range [...]string{tags.Title, tags.Artist, tags.Album, tags.Genre} {
		if s != "" {
			tagToks = append(tagToks, Tokenize(clip(s, MaxTagBytes))...)
		}
	}
	nameHits := 0
	for _, t := range q {
		switch {
		case slices.Contains(nameToks, t):
			nameHits++
		case slices.Contains(tagToks, t):
		default:
			return 0, false
		}
	}
	return score(nameHits, len(q), min(len(nameToks), MaxTokens)), true
}
