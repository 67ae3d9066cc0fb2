package compare

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/supernet-p2p/supernet/index"
	"github.com/supernet-p2p/supernet/protocol"
)

// Workload is what every design is run with.
type Workload struct {
	Peers int
	// Catalog is the number of distinct files (default Peers); FilesPerPeer the
	// mean a peer shares (default 10).
	Catalog      int
	FilesPerPeer float64
	// ZipfS is the exponent of file popularity, for how many peers hold a
	// file and how often it is asked for (default 0.8). MaxReplicaShare caps
	// the peers holding one file (default 5%).
	ZipfS           float64
	MaxReplicaShare float64
	// Queries are spread over the run after Warmup; AbsentShare of them are
	// for files that exist nowhere (default 20%; below zero, none).
	Queries     int
	AbsentShare float64
	Duration    time.Duration // simulated (default 20 min)
	Warmup      time.Duration // before the first query (default 1 min, at most a tenth of the run)
	// Sessions and the gaps between them are log-normal with these medians
	// (default 60 min both, sigma 1).
	SessionMedian, OffMedian time.Duration
	// CentralDiesAt and SupernodesDieAt are fractions of the run (defaults
	// 0.45 and 0.7): the central directory's server stops, and 30% of the
	// supernodes stop.
	CentralDiesAt, SupernodesDieAt float64
	QueryTimeout                   time.Duration // default 10 s, at most a tenth of the run
	Seed                           uint64
}

func (w *Workload) defaults() {
	if w.Catalog <= 0 {
		w.Catalog = w.Peers
	}
	if w.FilesPerPeer <= 0 {
		w.FilesPerPeer = 10
	}
	if w.ZipfS <= 0 {
		w.ZipfS = 0.8
	}
	if w.MaxReplicaShare <= 0 {
		w.MaxReplicaShare = 0.05
	}
	if w.Queries <= 0 {
		w.Queries = 500
	}
	switch {
	case w.AbsentShare == 0:
		w.AbsentShare = 0.2
	case w.AbsentShare < 0 || w.AbsentShare >= 1:
		w.AbsentShare = 0 // none
	}
	if w.Duration <= 0 {
		w.Duration = 20 * time.Minute
	}
	if w.Warmup <= 0 {
		w.Warmup = min(time.Minute, w.Duration/10)
	}
	if w.SessionMedian <= 0 {
		w.SessionMedian = time.Hour
	}
	if w.OffMedian <= 0 {
		w.OffMedian = time.Hour
	}
	if w.CentralDiesAt <= 0 {
		w.CentralDiesAt = 0.45
	}
	if w.SupernodesDieAt <= 0 {
		w.SupernodesDieAt = 0.7
	}
	if w.QueryTimeout <= 0 {
		w.QueryTimeout = min(10*time.Second, w.Duration/10)
	}
}

// world is a workload made concrete: the files, who holds them, the
// queries and the churn schedule. Every design gets the same world.
type world struct {
	w       Workload
	titles  []string  // by file
	words   [][3]int  // each file's words
	byWord  [][]int32 // word -> files with it
	wordOf  map[string]int
	terms   map[string][]int // query text -> its words, -1 for one no file has
	cids    []protocol.ContentID
	holds   [][]int32 // peer -> files
	holders [][]int32 // file -> peers
	queries []query
	churn   []churnEvent
	// startsOnline is each peer's state when the run starts: churn in its
	// steady state, where as many peers join as leave.
	startsOnline []bool
}

type query struct {
	at    time.Duration
	from  int // peer
	text  string
	files []int32 // files whose names have every term; empty for an absent file
}

type churnEvent struct {
	at   time.Duration
	peer int
	up   bool
}

// syllables make words that tokenise as themselves.
var syllables = []string{"ba", "ko", "ri", "ta", "ne", "su", "mi", "lo", "de", "fa", "gu", "hi", "ja", "ke", "po", "vu"}

func word(i int) string {
	s := ""
	for n := i + len(syllables); n > 0; n /= len(syllables) {
		s += syllables[n%len(syllables)]
	}
	return s
}

func newWorld(w Workload) *world {
	w.defaults()
	rng := rand.New(rand.NewPCG(w.Seed, w.Seed^0x9e3779b97f4a7c15))
	wd := &world{w: w}
	// Half as many words as files: a word is in about six names, so two of
	// a file's words usually name it alone.
	vocab := max(8, w.Catalog/2)
	wd.byWord = make([][]int32, vocab)
	wd.wordOf = make(map[string]int, vocab)
	wd.terms = map[string][]int{}
	for i := 0; i < vocab; i++ {
		wd.wordOf[word(i)] = i
	}
	for f := 0; f < w.Catalog; f++ {
		var ws [3]int
		for i := range ws {
			for {
				ws[i] = rng.IntN(vocab)
				if !slices.Contains(ws[:i], ws[i]) {
					break
				}
			}
			wd.byWord[ws[i]] = append(wd.byWord[ws[i]], int32(f))
		}
		wd.words = append(wd.words, ws)
		wd.titles = append(wd.titles, fmt.Sprintf("%s %s %s.mp3", word(ws[0]), word(ws[1]), word(ws[2])))
		h := sha256.Sum256(binary.BigEndian.AppendUint64([]byte("compare file"), uint64(f)))
		wd.cids = append(wd.cids, protocol.ContentID(h))
	}
	// Replicas by Zipf popularity: file rank r (its index) is held by a
	// share of the copies proportional to r^-s, at least one, capped.
	weights := make([]float64, w.Catalog)
	var sum float64
	for r := range weights {
		weights[r] = math.Pow(float64(r+1), -w.ZipfS)
		sum += weights[r]
	}
	total := float64(w.Peers) * w.FilesPerPeer
	wd.holds = make([][]int32, w.Peers)
	wd.holders = make([][]int32, w.Catalog)
	maxCopies := max(1, int(w.MaxReplicaShare*float64(w.Peers)))
	for f := range weights {
		copies := min(maxCopies, max(1, int(math.Round(total*weights[f]/sum))))
		for _, p := range sample(rng, w.Peers, copies) {
			wd.holds[p] = append(wd.holds[p], int32(f))
			wd.holders[f] = append(wd.holders[f], int32(p))
		}
	}
	// Queries: a popular file more often, by the same law; two of its words.
	cdf := make([]float64, len(weights))
	acc := 0.0
	for i, x := range weights {
		acc += x / sum
		cdf[i] = acc
	}
	span := w.Duration - w.Warmup - w.QueryTimeout
	for i := 0; i < w.Queries; i++ {
		q := query{at: w.Warmup + time.Duration(float64(span)*float64(i)/float64(w.Queries)), from: rng.IntN(w.Peers)}
		if rng.Float64() < w.AbsentShare {
			// Words past the vocabulary: in no file's name.
			q.text = word(vocab+rng.IntN(vocab)) + " " + word(vocab+rng.IntN(vocab))
		} else {
			f, _ := slices.BinarySearch(cdf, rng.Float64())
			f = min(f, w.Catalog-1)
			a, b := wd.words[f][0], wd.words[f][1+rng.IntN(2)]
			q.text = word(a) + " " + word(b)
			q.files = intersect(wd.byWord[a], wd.byWord[b])
		}
		wd.queries = append(wd.queries, q)
	}
	wd.churn, wd.startsOnline = churnSchedule(rng, w)
	return wd
}

// termsOf are a query's words as the index tokenises them, by number (-1
// for a word in no file's name), computed once per query text.
func (wd *world) termsOf(text string) []int {
	if t, ok := wd.terms[text]; ok {
		return t
	}
	var t []int
	for _, s := range index.Tokenize(text) {
		w, ok := wd.wordOf[s]
		if !ok {
			w = -1
		}
		t = append(t, w)
	}
	wd.terms[text] = t
	return t
}

// matches reports whether file f's name has every one of the words.
func (wd *world) matches(f int32, terms []int) bool {
	for _, t := range terms {
		if !slices.Contains(wd.words[f][:], t) {
			return false
		}
	}
	return len(terms) > 0
}

// sample picks k distinct values below n.
func sample(rng *rand.Rand, n, k int) []int {
	if k*2 > n {
		return rng.Perm(n)[:k]
	}
	seen := make(map[int]bool, k)
	out := make([]int, 0, k)
	for len(out) < k {
		if v := rng.IntN(n); !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

func intersect(a, b []int32) []int32 {
	var out []int32
	for _, x := range a {
		if _, ok := slices.BinarySearch(b, x); ok {
			out = append(out, x)
		}
	}
	return out
}

// churnSchedule gives each peer alternating sessions and gaps from long
// before the run, so the run starts in churn's steady state: about
// SessionMedian/(SessionMedian+OffMedian) of the peers online, each part way
// through its session or gap, and as many joining as leaving. It returns
// the events within the run and who is online at its start.
func churnSchedule(rng *rand.Rand, w Workload) ([]churnEvent, []bool) {
	logNormal := func(median time.Duration) time.Duration {
		return time.Duration(float64(median) * math.Exp(rng.NormFloat64()))
	}
	// Ten mean cycles back: far enough that where a peer started is
	// forgotten.
	from := -10 * time.Duration(math.Exp(0.5)*float64(w.SessionMedian+w.OffMedian))
	var out []churnEvent
	online := make([]bool, w.Peers)
	for p := 0; p < w.Peers; p++ {
		t := from
		up := rng.IntN(2) == 0
		for t < w.Duration {
			var next time.Duration
			if up {
				next = t + logNormal(w.SessionMedian)
			} else {
				next = t + logNormal(w.OffMedian)
			}
			if t <= 0 && next > 0 {
				online[p] = up
			}
			if next > 0 && next < w.Duration {
				out = append(out, churnEvent{at: next, peer: p, up: !up})
			}
			t, up = next, !up
		}
	}
	slices.SortFunc(out, func(a, b churnEvent) int { return int(a.at - b.at) })
	return out, online
}
