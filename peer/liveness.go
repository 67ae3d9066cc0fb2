package peer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/transport"
)

// A supernode that crashes, loses power or is cut off sends no goodbye, and
// QUIC's idle timeout (15 s) is far too long to wait. So the leaf pings every
// supernode it is attached to each ProbeInterval, all in one round, and takes
// any packet that arrives on a connection as a sign of life from its
// supernode: the QUIC acknowledgement of the ping, the Pong, anything else.
//
// A supernode is silent when nothing came from it for silentProbes intervals,
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
// before it leaves the next, up to maxWary doublings, and comes back down a
// step for every waryDecay without such a mistake. So a leaf on a machine
// where stalls are the rule does not churn its attachments, which would load
// the machine more.
const (
	silentProbes    = 3
	maxSilentProbes = 24 // the longest wait, in intervals: under QUIC's idle timeout
	maxWary         = 3
	waryDecay       = time.Minute
	checkLeftFor    = 10 * time.Second
	checksPerProbe  = 5
	// pongHistory is how many answered rounds a slot keeps, to find one at
	// least the grace old.
	pongHistory = 4
	// pingRounds is how many rounds' send times are kept to match pongs to.
	pingRounds = 16
)

// answerTime is how long the slot's supernode may take to answer a ping: its
// smoothed answer time and four times their mean deviation (0 before any).
func (s *slot) answerTime() time.Duration { return s.srtt + 4*s.rttvar }

// silentAfter is how long the slot's supernode may send nothing, wary
// doublings on.
func (s *slot) silentAfter(probe time.Duration, wary int) time.Duration {
	return min(max(silentProbes*probe, probe+s.answerTime())<<wary, maxSilentProbes*probe)
}

// errSilent closes the link to a supernode that stopped answering.
var errSilent = errors.New("supernode stopped answering")

// pongAt is an answered ping round: when it was sent and when the answer came.
type pongAt struct {
	sent, at time.Time
}

// watch pings the attached supernodes and leaves those that went silent.
func (a *attachment) watch() {
	d := a.d
	defer d.wg.Done()
	every := d.cfg.ProbeInterval
	t := time.NewTicker(every / checksPerProbe)
	defer t.Stop()
	for n := 0; ; n++ {
		select {
		case <-t.C:
		case <-d.ctx.Done():
			return
		}
		now := time.Now()
		if n%checksPerProbe == 0 {
			a.mu.Lock()
			a.pingSeq++
			seq := a.pingSeq
			a.pingSent[seq%pingRounds] = now
			a.mu.Unlock()
			for _, l := range a.links() {
				l.Send(&protocol.Ping{Seq: seq})
			}
		}
		dead, ask := a.check(now)
		for _, c := range dead {
			c.l.Log().Warn().Dur("silent", c.silent).Msg("supernode stopped answering while others answer; leaving it")
			c.l.Close(fmt.Errorf("%w for %v", errSilent, c.silent.Round(time.Millisecond)))
			d.wg.Add(1)
			go a.checkLeft(c.l)
		}
		if ask {
			a.askOthers()
		}
	}
}

// ponged notes the supernode of s answering ping round seq.
func (a *attachment) ponged(s *slot, l *transport.Link, seq uint64) {
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	if s.link != l || seq == 0 || seq > a.pingSeq || a.pingSeq-seq >= pingRounds {
		return // not a round of ours, or too old to tell when it went
	}
	sent := a.pingSent[seq%pingRounds]
	copy(s.pongs[1:], s.pongs[:pongHistory-1])
	s.pongs[0] = pongAt{sent, now}
	// RFC 6298's estimator, over the answer times.
	r := now.Sub(sent)
	if s.srtt == 0 {
		s.srtt, s.rttvar = r, r/2
		return
	}
	s.rttvar += (max(s.srtt-r, r-s.srtt) - s.rttvar) / 4
	s.srtt += (r - s.srtt) / 8
}

type silentLink struct {
	l      *transport.Link
	silent time.Duration
}

// check notes which links heard from their supernode since the last check,
// and returns those silent too long while our network was shown to work,
// and whether a STUN answer from elsewhere is wanted to tell.
func (a *attachment) check(now time.Time) (dead []silentLink, ask bool) {
	every := a.d.cfg.ProbeInterval
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.wary > 0 && now.Sub(a.waryAt) >= waryDecay {
		a.wary--
		a.waryAt = now
	}
	for _, s := range a.slots {
		if s.link != nil {
			s.hear(now)
		}
	}
	for _, s := range a.slots {
		if s.link == nil {
			continue
		}
		silent, after := now.Sub(s.heard), s.silentAfter(every, a.wary)
		if silent < after-every {
			continue
		}
		grace := max(every, s.answerTime())
		// The latest round trip begun since that we know completed, with
		// time enough for this supernode to have answered too.
		var shown time.Time
		if !a.stunAt.IsZero() && now.Sub(a.stunAt) >= every/checksPerProbe {
			shown = a.stunSent
		}
		for _, o := range a.slots {
			if o == s || o.link == nil {
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
			ask = ask || !a.stunSent.After(s.heard)
		case silent >= after:
			dead = append(dead, silentLink{s.link, silent})
		}
	}
	return dead, ask && !a.asking
}

// hear notes a packet from the slot's supernode since the last look.
func (s *slot) hear(now time.Time) {
	if n := s.link.PacketsReceived(); n != s.rx {
		s.rx, s.heard = n, now
	}
}

// askOthers sends STUN Binding requests to two supernodes we are not attached
// to, and notes when one answers: our network works, so supernodes silent
// since before the request went are gone.
func (a *attachment) askOthers() {
	var cands []string
	now := time.Now()
	targets := a.targets()
	a.mu.Lock()
	held := make(map[string]bool)
	for _, s := range a.slots {
		if s.link != nil {
			held[s.status.Addr] = true
		}
	}
	for _, t := range targets {
		_, addr, err := transport.ParseTarget(t)
		if err != nil || held[addr] || now.Before(a.down[addr]) {
			continue
		}
		if cands = append(cands, addr); len(cands) == 2 {
			break
		}
	}
	if len(cands) == 0 {
		a.mu.Unlock()
		return // nobody to ask: QUIC's idle timeout decides
	}
	a.asking = true
	a.mu.Unlock()
	d := a.d
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		every := d.cfg.ProbeInterval
		ctx, cancel := context.WithTimeout(d.ctx, 2*every)
		defer cancel()
		var uas []*net.UDPAddr
		for _, c := range cands {
			if ua, err := net.ResolveUDPAddr("udp", c); err == nil {
				uas = append(uas, ua)
			}
		}
		_, err := d.node.Punch(ctx, uas, every)
		a.mu.Lock()
		a.asking = false
		if err == nil {
			a.stunSent, a.stunAt = now, time.Now()
		}
		a.mu.Unlock()
	}()
}

// checkLeft asks a supernode just left as silent whether it is still there,
// and makes the leaf wary of leaving the next if it is.
func (a *attachment) checkLeft(l *transport.Link) {
	d := a.d
	defer d.wg.Done()
	ua, ok := l.RemoteAddr().(*net.UDPAddr)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(d.ctx, checkLeftFor)
	defer cancel()
	if _, err := d.node.Reflexive(ctx, ua); err != nil {
		return // gone, as we thought
	}
	a.mu.Lock()
	a.wary, a.waryAt = min(a.wary+1, maxWary), time.Now()
	wary := a.wary
	a.mu.Unlock()
	l.Log().Warn().Int("wary", wary).Msg("a supernode left as silent still answers: it was stalled, not gone; waiting longer before leaving one")
}
