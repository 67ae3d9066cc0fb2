package attach

import "time"

// A supernode that crashes, loses power or is cut off sends no goodbye, and
// QUIC's idle timeout (15 s) is far too long to wait. So the leaf pings every
// supernode it is attached to each probe interval, all in one round, and
// takes any packet that arrives on a connection as a sign of life from its
// supernode: the QUIC acknowledgement of the ping, the Pong, anything else.
//
// A supernode is silent when nothing came from it for SilentProbes intervals,
// or, if it answers pings slowly, for one interval and its usual answer time
// (its smoothed answer time and four times their deviation, as TCP sets its
// retransmission timeout), whichever is longer: a loaded supernode is slow,
// not dead. A silent supernode is left, but only when our own network has
// been shown to work since it went silent: another supernode answered a ping
// round sent after the silent one's last sign of life, and the silent one
// has had the longer of an interval and its usual answer time since then to
// answer the same round; or, when every attached supernode is silent, a
// supernode we are not attached to answered a STUN request sent after it. A
// busy home uplink that queues packets for a second or more, a stalled Wi-Fi
// or a leaf process that did not run for a while silences every supernode at
// once, and then none is left. Packets that merely arrive prove nothing of
// the uplink: with our own packets stuck in a queue, supernodes still send
// retransmissions.
//
// A supernode left as silent is then asked, by STUN, whether its process is
// still there. A crashed or cut-off one does not answer. One that does was
// only stalled (an overloaded host, say): the leaf then waits twice as long
// before it leaves the next, up to MaxWary doublings, and comes back down a
// step for every WaryDecay without such a mistake. So a leaf on a machine
// where stalls are the rule does not churn its attachments, which would load
// the machine more.
const (
	SilentProbes    = 3
	MaxSilentProbes = 24 // the longest wait, in intervals: under QUIC's idle timeout
	MaxWary         = 3
	WaryDecay       = time.Minute
	// ChecksPerProbe is how many times per probe interval silence is checked.
	ChecksPerProbe = 5
	// pongHistory is how many answered rounds a slot keeps, to find one at
	// least the grace old.
	pongHistory = 4
	// pingRounds is how many rounds' send times are kept to match pongs to.
	pingRounds = 16
)

// pongAt is an answered ping round: when it was sent and when the answer came.
type pongAt struct {
	sent, at time.Time
}

// Liveness is what one attached supernode has shown of life.
type Liveness struct {
	// rx is the count of packets received on the link when heard was last
	// moved on: heard is when the supernode last showed a sign of life.
	rx    uint64
	heard time.Time
	pongs [pongHistory]pongAt // the ping rounds it answered last, latest first
	// srtt and rttvar estimate how long its supernode takes to answer a ping.
	srtt, rttvar time.Duration
	// pace is the least interval between pings the supernode asked for.
	pace time.Duration
}

// MaxPace bounds the interval a supernode may ask pings to keep: a quarter
// of a leaf link's idle timeout (transport.LeafIdleFactor), so that a lost
// ping or two does not drop the link.
const MaxPace = 15 * time.Second

// Paced notes the interval between pings the supernode asked for.
func (v *Liveness) Paced(every time.Duration) { v.pace = min(max(every, 0), MaxPace) }

// Attached starts the liveness of a supernode just attached, whose link has
// received rx packets.
func Attached(now time.Time, rx uint64) Liveness { return Liveness{rx: rx, heard: now} }

// Hear notes the link's count of packets received: when it moved on, the
// supernode showed life.
func (v *Liveness) Hear(now time.Time, rx uint64) {
	if rx != v.rx {
		v.rx, v.heard = rx, now
	}
}

// Heard is when the supernode last showed a sign of life.
func (v *Liveness) Heard() time.Time { return v.heard }

// AnswerTime is how long the supernode may take to answer a ping: its
// smoothed answer time and four times their mean deviation (0 before any).
func (v *Liveness) AnswerTime() time.Duration { return v.srtt + 4*v.rttvar }

// SilentAfter is how long the supernode may send nothing, wary doublings on.
func (v *Liveness) SilentAfter(probe time.Duration, wary int) time.Duration {
	return min(max(SilentProbes*probe, probe+v.AnswerTime())<<wary, MaxSilentProbes*probe)
}

// ponged notes an answer at now to the round sent at sent.
func (v *Liveness) ponged(sent, now time.Time) {
	copy(v.pongs[1:], v.pongs[:pongHistory-1])
	v.pongs[0] = pongAt{sent, now}
	// RFC 6298's estimator, over the answer times.
	r := now.Sub(sent)
	if v.srtt == 0 {
		v.srtt, v.rttvar = r, r/2
		return
	}
	v.rttvar += (max(v.srtt-r, r-v.srtt) - v.rttvar) / 4
	v.srtt += (r - v.srtt) / 8
}

// Watch is the leaf's side of the liveness rounds: the ping rounds sent, the
// last STUN answer from a supernode we are not attached to, and how wary the
// leaf is of leaving a silent one.
type Watch struct {
	every    time.Duration
	seq      uint64
	sent     [pingRounds]time.Time
	stunSent time.Time // when the last answered STUN request went
	stunAt   time.Time // and when its answer came
	asking   bool
	// wary doublings of the wait before a silent supernode is left, since
	// waryAt: one for each left that turned out to be alive.
	wary   int
	waryAt time.Time
	// urgedAt is when a supernode was last suspected of dying (see Urge);
	// until urgedUntil the rounds go at our own interval.
	urgedAt, urgedUntil time.Time
}

// A busy supernode asks for pings seldom, so a crash is noticed late. A
// search that a supernode does not acknowledge in time suspects it: for a
// while the rounds go at our own interval again, whatever was asked, and
// silence is judged by it, though no supernode is left before it has had
// SilentProbes of those intervals since the suspicion to answer. urgeRounds
// is how long that lasts, in our intervals.
const urgeRounds = SilentProbes + 3

// Urge starts such a while at now, when our interval is ours; it reports
// whether the rounds go faster from now on (false while one is on, or when
// they go at ours already: then silence is judged by it anyway, and the
// wait for SilentProbes intervals from the suspicion would only delay).
func (w *Watch) Urge(now time.Time, ours time.Duration) bool {
	if ours <= 0 || now.Before(w.urgedUntil) || w.every <= ours {
		return false
	}
	w.urgedAt, w.urgedUntil = now, now.Add(urgeRounds*ours)
	return true
}

// NewWatch returns the rounds of a leaf that pings every probe interval.
func NewWatch(every time.Duration) *Watch { return &Watch{every: every} }

// Every is the probe interval the rounds go at now.
func (w *Watch) Every() time.Duration { return w.every }

// Pace sets the probe interval to the least of ours and what the busiest
// of the attached supernodes asked for (a round pings them all), or to ours
// while urged, and returns it.
func (w *Watch) Pace(now time.Time, ours time.Duration, slots []*Liveness) time.Duration {
	w.every = ours
	if now.Before(w.urgedUntil) {
		return w.every
	}
	for _, s := range slots {
		w.every = max(w.every, s.pace)
	}
	return w.every
}

// Round starts a ping round at now and returns its sequence number.
func (w *Watch) Round(now time.Time) uint64 {
	w.seq++
	w.sent[w.seq%pingRounds] = now
	return w.seq
}

// Ponged notes v's supernode answering round seq at now; answers to rounds
// not ours, or too old to tell when they went, are ignored.
func (w *Watch) Ponged(v *Liveness, seq uint64, now time.Time) {
	if seq == 0 || seq > w.seq || w.seq-seq >= pingRounds {
		return
	}
	v.ponged(w.sent[seq%pingRounds], now)
}

// Silent is a supernode to leave, by its index in the slice given to Check.
type Silent struct {
	Index  int
	Silent time.Duration
}

// Check returns the supernodes silent too long while our network was shown
// to work, and whether a STUN answer from a supernode we are not attached to
// is wanted to tell. slots are the attached supernodes, heard up to now.
func (w *Watch) Check(now time.Time, slots []*Liveness) (dead []Silent, ask bool) {
	every := w.every
	if w.wary > 0 && now.Sub(w.waryAt) >= WaryDecay {
		w.wary--
		w.waryAt = now
	}
	for i, s := range slots {
		silent, after := now.Sub(s.heard), s.SilentAfter(every, w.wary)
		if silent < after-every {
			continue
		}
		grace := max(every, s.AnswerTime())
		// The latest round trip begun since that we know completed, with
		// time enough for this supernode to have answered too.
		var shown time.Time
		if !w.stunAt.IsZero() && now.Sub(w.stunAt) >= every/ChecksPerProbe {
			shown = w.stunSent
		}
		for j, o := range slots {
			if j == i {
				continue
			}
			for _, p := range o.pongs {
				if !p.at.IsZero() && now.Sub(p.at) >= grace && p.sent.After(shown) {
					shown = p.sent
				}
			}
		}
		switch {
		case !shown.After(s.heard):
			// Unless an answer is in, too fresh to go by yet.
			ask = ask || !w.stunSent.After(s.heard)
		case silent >= after && (now.Sub(w.urgedAt) >= SilentProbes*every || s.heard.After(w.urgedAt)):
			dead = append(dead, Silent{i, silent})
		}
	}
	return dead, ask && !w.asking
}

// Asking notes a STUN request to supernodes we are not attached to going out.
func (w *Watch) Asking() { w.asking = true }

// Asked notes its end: when answered, a request sent at sent was answered at at.
func (w *Watch) Asked(answered bool, sent, at time.Time) {
	w.asking = false
	if answered {
		w.stunSent, w.stunAt = sent, at
	}
}

// Stalled notes that a supernode left as silent still answers, and returns
// the wary doublings now in force.
func (w *Watch) Stalled(now time.Time) int {
	w.wary, w.waryAt = min(w.wary+1, MaxWary), now
	return w.wary
}

// Wary is the doublings of the wait before a silent supernode is left.
func (w *Watch) Wary() int { return w.wary }
