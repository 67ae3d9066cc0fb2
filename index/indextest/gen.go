// Package indextest makes deterministic, realistic-looking shared-file lists for tests
// and benchmarks of the index and of the packages built on it. It is not a model of any
// real network's content; it only has the shape that matters to an index: names of
// 30-60 bytes mixing a skewed artist popularity, common and rare title words, track
// numbers and extensions, and media tags on some files.
package indextest

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/supernet-p2p/supernet/index"
	"github.com/supernet-p2p/supernet/protocol"
)

var (
	firstNames = strings.Fields(`John Paul George Ringo Aretha Billie Bob David Elton Freddie
		Janis Jimi Johnny Joni Kurt Leonard Marvin Miles Nina Otis Patti Prince Ray Stevie
		Tina Whitney Amy Adele Bruce Carole Dolly Ella Frank Gloria Herbie Iggy James Karen
		Lana Lou Madonna Neil Ozzy Peter Quincy Roy Sade Taylor Van Willie Yoko Zara Ana
		Bjork Celine Diana Enya Fiona Grace Hans Ivan Jorge Kai`)
	lastNames = strings.Fields(`Smith Jones Brown Taylor Wilson Davies Evans Thomas Johnson
		Roberts Walker Wright Robinson Thompson White Hughes Edwards Green Hall Wood Harris
		Lewis Martin Jackson Clarke Clark Turner Hill Scott Cooper Morris Ward Moore King
		Watson Baker Harrison Morgan Patel Young Allen Mitchell James Anderson Phillips Lee
		Bell Parker Davis Miller Garcia Rodriguez Martinez Hernandez Lopez Gonzalez Perez
		Sanchez Ramirez Torres Flores Rivera Gomez Diaz Reyes Cruz Morales Ortiz Gutierrez
		Chavez Ramos Ruiz Alvarez Mendoza Castillo Jimenez Moreno Romero Herrera Medina
		Aguilar Vargas Kim Nguyen Chen Wang Li Zhang Singh Kumar Muller Schmidt Schneider
		Fischer Weber Meyer Wagner Becker Schulz Hoffmann Rossi Russo Ferrari Esposito
		Bianchi Romano Colombo Ricci Marino Greco Dubois Durand Lefebvre Moreau Laurent`)
	adjectives = strings.Fields(`Black White Red Blue Golden Silver Electric Velvet Rolling
		Crimson Broken Wild Dead Lost Silent Flying Burning Frozen Hollow Neon Cosmic Dark
		Bright Lonely Happy Sonic Arctic Royal Iron Stone Glass Paper Plastic Savage Gentle
		Midnight Morning Howling Atomic Crystal Purple Green Yellow Sunny Stormy Wicked`)
	nouns = strings.Fields(`Stones Keys Monkeys Kings Queens Wolves Foxes Tigers Ravens
		Crows Doors Pistols Strokes Killers Flowers Roses Lips Hearts Bones Ghosts Angels
		Devils Giants Horses Knights Pilots Sailors Smiths Shadows Lights Stars Suns Moons
		Rivers Mountains Machines Robots Dreamers Lovers Strangers Brothers Sisters Sons
		Daughters Heroes Vandals Saints Sinners Riders Hunters Drifters`)
	titleWords = strings.Fields(`love you me my the a in of to and baby heart night day
		time life world girl boy man woman dance dream fire rain sun moon star light dark
		blue red gold home road way free wild young old new last first forever never always
		tonight tomorrow yesterday summer winter spring autumn river ocean sea sky city
		street town paradise heaven hell angel devil kiss touch feel want need know think
		say tell give take come go run walk fly fall rise stay leave back down up out over
		under away again alone together lonely crazy sweet bad good little big long high
		low hot cold burning broken lost found hold let me down all everything nothing
		something someone nobody everybody somebody song music rock roll blues soul funky
		groove party hey jude yeah oh la na do it on off shine smile cry tears eyes hands
		lips face mind body soul spirit ghost shadow mirror window door wall house room bed
		table chair car train plane boat ship island desert mountain valley garden flower
		rose tree leaf stone diamond silver money gun war peace revolution freedom
		memories secret lies truth promise wish hope faith fear pain sorrow joy happiness
		morning evening midnight hour minute second moment year season story letter word
		name number one two three four five six seven eight nine ten hundred thousand`)
	genres = strings.Fields(`Rock Pop Jazz Blues Classical Electronic HipHop Rap Metal
		Punk Folk Country Reggae Soul Funk Disco House Techno Ambient Indie Alternative
		Latin World Soundtrack`)
	qualifiers = []string{"(Live)", "(Remastered)", "(Remastered 2011)", "(Acoustic)",
		"(Radio Edit)", "(Extended Mix)", "(Demo)", "(feat. Guest)", "[320kbps]", "(Remix)",
		"(Single Version)", "(Instrumental)", "(Bonus Track)", "(Mono)"}
	syllables = strings.Fields(`ka ri to mo na shi lu ve ra den bor kil tan zo mi ex qu
		ar el on is ur an en in ol yr vak dra gon mel tor fin gal bre sto ven lak pim`)
)

// vocab is the shared universe every generator draws from, so that lists made with
// different seeds overlap the way different peers' collections do.
type vocab struct {
	artists []string
	rare    []string // a long tail of invented words
}

func newVocab() *vocab {
	r := rand.New(rand.NewPCG(0x5eed, 0x5eed))
	v := &vocab{}
	for range 20000 {
		var b strings.Builder
		for range 2 + r.IntN(3) {
			b.WriteString(syllables[r.IntN(len(syllables))])
		}
		v.rare = append(v.rare, b.String())
	}
	for range 5000 {
		var a string
		switch r.IntN(4) {
		case 0, 1:
			a = pick(r, firstNames) + " " + pick(r, lastNames)
		case 2:
			a = "The " + pick(r, adjectives) + " " + pick(r, nouns)
		default:
			a = title(pick(r, v.rare))
			if r.IntN(2) == 0 {
				a += " " + title(pick(r, v.rare))
			}
		}
		v.artists = append(v.artists, a)
	}
	return v
}

func pick(r *rand.Rand, l []string) string { return l[r.IntN(len(l))] }

func title(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// Names returns n entries generated from seed: the same seed gives the same entries.
// Content IDs are random and distinct; about 40% of the music carries tags.
func Names(seed int64, n int) []index.Entry {
	v := newVocab()
	r := rand.New(rand.NewPCG(uint64(seed), 0x1dea))
	artistZipf := rand.NewZipf(r, 1.1, 4, uint64(len(v.artists)-1))
	wordZipf := rand.NewZipf(r, 1.1, 8, uint64(len(titleWords)-1))
	rareZipf := rand.NewZipf(r, 1.01, 10, uint64(len(v.rare)-1))

	word := func() string {
		if r.IntN(6) == 0 {
			return title(v.rare[rareZipf.Uint64()])
		}
		return title(titleWords[wordZipf.Uint64()])
	}
	songTitle := func() string {
		w := make([]string, 2+r.IntN(4))
		for i := range w {
			w[i] = word()
		}
		return strings.Join(w, " ")
	}

	out := make([]index.Entry, n)
	for i := range out {
		e := &out[i]
		for j := 0; j < 4; j++ {
			x := r.Uint64()
			for k := range 8 {
				e.ContentID[8*j+k] = byte(x >> (8 * k))
			}
		}
		artist := v.artists[artistZipf.Uint64()]
		song := songTitle()
		switch kind := r.IntN(100); {
		case kind < 80: // music
			ext := [...]string{"mp3", "mp3", "mp3", "mp3", "flac", "m4a", "ogg", "wma"}[r.IntN(8)]
			track := 1 + r.IntN(16)
			switch r.IntN(5) {
			case 0:
				e.Name = fmt.Sprintf("%02d - %s - %s.%s", track, artist, song, ext)
			case 1:
				e.Name = fmt.Sprintf("%s - %s %s.%s", artist, song, pick(r, qualifiers), ext)
			case 2:
				e.Name = strings.ReplaceAll(fmt.Sprintf("%s - %s.%s", artist, song, ext), " ", "_")
			default:
				e.Name = fmt.Sprintf("%s - %s.%s", artist, song, ext)
			}
			e.Size = int64(2<<20 + r.IntN(10<<20))
			if ext == "flac" {
				e.Size *= 5
			}
			if r.IntN(10) < 4 {
				e.Tags = protocol.Tags{
					Title:  song,
					Artist: artist,
					Album:  songTitle(),
					Genre:  pick(r, genres),
					Year:   1960 + r.IntN(65),
				}
				if r.IntN(3) == 0 {
					// A file whose name says nothing, findable only by its tags.
					e.Name = fmt.Sprintf("Track%02d.%s", track, ext)
				}
			}
		case kind < 92: // video
			res := [...]string{"720p", "1080p", "2160p", "DVDRip", "x264"}[r.IntN(5)]
			e.Name = fmt.Sprintf("%s (%d) %s.%s", song, 1970+r.IntN(55), res, pick(r, []string{"mkv", "mp4", "avi"}))
			e.Size = int64(700<<20 + r.IntN(3<<30))
		default: // books and other documents
			e.Name = fmt.Sprintf("%s - %s.%s", song, artist, pick(r, []string{"pdf", "epub", "txt", "zip"}))
			e.Size = int64(100<<10 + r.IntN(20<<20))
		}
	}
	return out
}

// notTyped are words of file names that people do not search for.
var notTyped = map[string]bool{"mp3": true, "flac": true, "m4a": true, "ogg": true, "wma": true,
	"mkv": true, "mp4": true, "avi": true, "pdf": true, "epub": true, "txt": true, "zip": true,
	"track": true, "720p": true, "1080p": true, "2160p": true, "dvdrip": true, "x264": true}

// Queries returns n queries drawn from entries the way users type them: one to three
// words of one file's name or tags (not its extension or numbers), so most queries have answers.
func Queries(seed int64, entries []index.Entry, n int) []string {
	r := rand.New(rand.NewPCG(uint64(seed), 0x9e7))
	out := make([]string, 0, n)
	for len(out) < n {
		e := &entries[r.IntN(len(entries))]
		words := index.Tokenize(e.Name + " " + e.Tags.Artist + " " + e.Tags.Title)
		words = slices.DeleteFunc(words, func(w string) bool { return notTyped[w] || w[0] <= '9' || strings.HasPrefix(w, "track") })
		if len(words) == 0 {
			continue
		}
		k := min(1+r.IntN(3), len(words))
		r.Shuffle(len(words), func(i, j int) { words[i], words[j] = words[j], words[i] })
		out = append(out, strings.Join(words[:k], " "))
	}
	return out
}

// Hostile returns n entries generated from seed as an attacker would publish them to
// cost a supernode the most: every string at the length the index keeps (a 1024-byte
// name, four 256-byte tags), each made of as many words as the index takes from one
// string, none of them used by any other entry. Every third entry spells its words with
// characters that normalising lengthens (ligatures, compatibility forms), so that the
// index holds more bytes of terms than the entry carries.
func Hostile(seed int64, n int) []index.Entry {
	r := rand.New(rand.NewPCG(uint64(seed), 0xbad))
	// Each normalises to several letters: ﬃ to ffi, ㌀ to アハート, ǆ to dž.
	expanding := []string{"ﬃ", "ﬄ", "㌀", "㍻", "ǆ", "ﬆ", "㎑", "ŉ"}
	var b strings.Builder
	field := func(max int, wide bool) string {
		words := index.MaxTokens
		b.Reset()
		for w := range words {
			if w > 0 {
				b.WriteByte(' ')
			}
			room := (max-b.Len())/(words-w) - 1 // share out the length left
			// A unique prefix keeps every word new; the rest fills the room.
			fmt.Fprintf(&b, "%x", r.Uint64()&0xffffff)
			for room -= 6; room > 0; {
				if wide && room >= 3 {
					x := expanding[r.IntN(len(expanding))]
					if len(x) <= room {
						b.WriteString(x)
						room -= len(x)
						continue
					}
				}
				b.WriteByte(byte('a' + r.IntN(26)))
				room--
			}
		}
		return b.String()
	}
	out := make([]index.Entry, n)
	for i := range out {
		e := &out[i]
		for j := 0; j < 4; j++ {
			x := r.Uint64()
			for k := range 8 {
				e.ContentID[8*j+k] = byte(x >> (8 * k))
			}
		}
		wide := i%3 == 2
		e.Name = field(index.MaxNameBytes, wide)
		e.Size = r.Int64()
		e.Tags = protocol.Tags{
			Title:  field(index.MaxTagBytes, wide),
			Artist: field(index.MaxTagBytes, wide),
			Album:  field(index.MaxTagBytes, wide),
			Genre:  field(index.MaxTagBytes, wide),
			Year:   r.Int(),
		}
	}
	return out
}
