package compare

import (
	"slices"
	"time"
)

// UpkeepKinds are the kinds of upkeep a Result counts apart.
var UpkeepKinds = upkeepKinds[:]

// Result is what one design did with one workload.
type Result struct {
	Design string
	Peers  int
	// Queries asked; Answerable had a file on a live peer.
	Queries, Answerable int
	// Per query, counting every message sent for it anywhere.
	MsgsMean, MsgsP99   float64
	BytesMean, BytesP99 float64
	// Recall is the mean share of the answerable queries' files found; Success
	// the share of answerable queries that found one.
	Recall, Success float64
	// Time to the first and the last useful hit, over the queries that had one.
	FirstP50, FirstP99, LastP50 time.Duration
	// Upkeep is what no query asked for: publishing, summaries, joins,
	// repairs, pings, member gossip; Upkeep by kind (UpkeepKinds) too.
	UpkeepMsgs, UpkeepBytes uint64
	UpkeepKindMsgs          map[string]uint64
	UpkeepKindBytes         map[string]uint64
	// ServingNodes are the nodes that serve the others, which upkeep is
	// shared by: the supernodes, the central server, or every online peer
	// (at the end of the run) where all serve.
	ServingNodes int
	// The node that sent and received the most messages, and its share of
	// all messages delivered or sent; BusiestMsgsPerSec is its mean rate over
	// the run, and BusiestBytesPerSec the highest mean rate of bytes sent
	// and received of any node.
	BusiestMsgs                           uint64
	BusiestShare                          float64
	BusiestMsgsPerSec, BusiestBytesPerSec float64
	StateMean                             float64
	StateMax                              int
	Failures                              []FailureResult
	// Timeline is the success rate in consecutive windows of the run.
	Timeline []Point
	// Window is the span "during" a failure covers and the timeline's step:
	// a minute, or a twentieth of a shorter run. Duration is the run's.
	Window, Duration time.Duration
}

// FailureResult is the success rate around one scheduled failure: in the
// three windows before it, the window after it, and the three after that.
type FailureResult struct {
	What string
	// Applies is false for a design without the part that fails: its rates
	// show what churn alone did.
	Applies               bool
	At                    time.Duration
	Before, During, After float64 // -1 when no answerable query fell in the window
}

// Point is the success rate over the window ending at At.
type Point struct {
	At      time.Duration
	Success float64
	N       int
}

// window is a minute, or a twentieth of a shorter run.
func window(run time.Duration) time.Duration { return min(time.Minute, run/20) }

func summarise(d design, e *env, failAt map[failure]time.Duration) Result {
	rec, net := e.rec, e.net
	r := Result{Design: d.Name(), Peers: len(e.online), Queries: len(rec.start), Duration: e.wd.w.Duration}
	var msgs, bytes []float64
	var first, last []time.Duration
	var recall float64
	for qi := range rec.start {
		msgs = append(msgs, float64(net.stats().tagMsgs[qi]))
		bytes = append(bytes, float64(net.stats().tagBytes[qi]))
		if len(rec.truth[qi]) == 0 {
			continue
		}
		r.Answerable++
		recall += float64(len(rec.found[qi])) / float64(len(rec.truth[qi]))
		if len(rec.found[qi]) > 0 {
			r.Success++
			first = append(first, rec.first[qi])
			last = append(last, rec.last[qi])
		}
	}
	if r.Answerable > 0 {
		r.Recall = recall / float64(r.Answerable)
		r.Success /= float64(r.Answerable)
	}
	r.MsgsMean, r.MsgsP99 = meanP99(msgs)
	r.BytesMean, r.BytesP99 = meanP99(bytes)
	r.FirstP50, r.FirstP99 = quantile(first, 0.5), quantile(first, 0.99)
	r.LastP50 = quantile(last, 0.5)
	if sv, ok := d.(interface{ servingNodes() int }); ok {
		r.ServingNodes = sv.servingNodes()
	} else {
		for _, on := range e.online {
			if on {
				r.ServingNodes++
			}
		}
	}
	r.UpkeepKindMsgs, r.UpkeepKindBytes = map[string]uint64{}, map[string]uint64{}
	for i, kind := range upkeepKinds {
		m, b := net.stats().tagMsgs[-1-i], net.stats().tagBytes[-1-i]
		r.UpkeepMsgs += m
		r.UpkeepBytes += b
		r.UpkeepKindMsgs[kind], r.UpkeepKindBytes[kind] = m, b
	}
	var all uint64
	for _, m := range net.stats().Msgs {
		all += m
		r.BusiestMsgs = max(r.BusiestMsgs, m)
	}
	if all > 0 {
		r.BusiestShare = float64(r.BusiestMsgs) / float64(all)
	}
	secs := e.wd.w.Duration.Seconds()
	r.BusiestMsgsPerSec = float64(r.BusiestMsgs) / secs
	r.BusiestBytesPerSec = float64(slices.Max(append(net.stats().Bytes, 0))) / secs
	st := d.state()
	for _, s := range st {
		r.StateMean += float64(s)
		r.StateMax = max(r.StateMax, s)
	}
	if len(st) > 0 {
		r.StateMean /= float64(len(st))
	}
	success := func(from, to time.Duration) (float64, int) {
		n, ok := 0, 0
		for qi, t := range rec.start {
			if t >= from && t < to && len(rec.truth[qi]) > 0 {
				n++
				if len(rec.found[qi]) > 0 {
					ok++
				}
			}
		}
		if n == 0 {
			return -1, 0
		}
		return float64(ok) / float64(n), n
	}
	win := window(e.wd.w.Duration)
	r.Window = win
	for _, f := range []failure{centralDies, supernodesDie} {
		t := failAt[f]
		fr := FailureResult{What: f.String(), At: t, Applies: d.has(f)}
		fr.Before, _ = success(t-3*win, t)
		fr.During, _ = success(t, t+win)
		fr.After, _ = success(t+win, t+4*win)
		r.Failures = append(r.Failures, fr)
	}
	for t := time.Duration(0); t < e.wd.w.Duration; t += win {
		if s, n := success(t, t+win); n > 0 {
			r.Timeline = append(r.Timeline, Point{At: t + win, Success: s, N: n})
		}
	}
	return r
}

// UpkeepPerNode is the upkeep per serving node per second of the run.
func (r Result) UpkeepPerNode() (msgs, bytes float64) {
	return r.PerNodePerSec(r.UpkeepMsgs), r.PerNodePerSec(r.UpkeepBytes)
}

// PerNodePerSec is a count over the run (messages, bytes) per serving node
// and second.
func (r Result) PerNodePerSec(x uint64) float64 {
	return float64(x) / (float64(max(r.ServingNodes, 1)) * max(r.Duration.Seconds(), 1))
}

func meanP99(xs []float64) (mean, p99 float64) {
	if len(xs) == 0 {
		return 0, 0
	}
	for _, x := range xs {
		mean += x
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return mean / float64(len(xs)), s[min(len(s)-1, int(0.99*float64(len(s))))]
}

func quantile(xs []time.Duration, q float64) time.Duration {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}
