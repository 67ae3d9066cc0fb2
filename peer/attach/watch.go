package attach

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"time"

	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/transport"
)

// The rules of when a silent supernode is left are attach.Watch's; here
// are the pings, the STUN requests and the closing.

// CheckLeftFor bounds the STUN request to a supernode just left as silent.
const CheckLeftFor = 10 * time.Second

// ErrSilent closes the link to a supernode that stopped answering.
var ErrSilent = errors.New("supernode stopped answering")

// watch pings the attached supernodes and leaves those that went silent.
func (a *Attachment) watch() {
	defer a.wg.Done()
	every := a.pace()
	t := time.NewTicker(every / ChecksPerProbe)
	defer t.Stop()
	for n := 0; ; n++ {
		select {
		case <-t.C:
		case <-a.urged:
			// A round at once, and the rounds at our pace from it.
			n = 0
			every = a.pace()
			t.Reset(every / ChecksPerProbe)
		case <-a.ctx.Done():
			return
		}
		now := time.Now()
		if n%ChecksPerProbe == 0 {
			// A busy supernode asks its leaves to ping less often.
			if e := a.pace(); e != every {
				every = e
				t.Reset(every / ChecksPerProbe)
			}
			a.mu.Lock()
			seq := a.rounds.Round(now)
			a.mu.Unlock()
			for _, l := range a.Links() {
				l.Send(protocol.NewPing(seq))
			}
		}
		dead, ask := a.check(now)
		for _, c := range dead {
			c.l.Log().Warn().Dur("silent", c.silent).Msg("supernode stopped answering while others answer; leaving it")
			c.l.Close(fmt.Errorf("%w for %v", ErrSilent, c.silent.Round(time.Millisecond)))
			a.wg.Add(1)
			go a.checkLeft(c.l)
		}
		if ask {
			a.askOthers()
		}
	}
}

// ponged notes the supernode of s answering ping round seq, and asking for
// pings no more often than every.
func (a *Attachment) ponged(s *slot, l *transport.Link, seq uint64, every time.Duration) {
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	if s.link == l {
		a.rounds.Ponged(&s.live, seq, now)
		s.live.Paced(every)
	}
}

// pace sets the probe interval from what the attached supernodes asked for.
func (a *Attachment) pace() time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	var lives []*Liveness
	for _, s := range a.slots {
		if s.link != nil {
			lives = append(lives, &s.live)
		}
	}
	return a.rounds.Pace(time.Now(), a.cfg.ProbeInterval, lives)
}

// Suspect tells the watch that the supernode on l did not acknowledge a
// query in time: it may have died, which at a busy supernode's slow pace
// would be noticed late. The rounds go at our own interval for a while, so
// it is noticed as soon as at an idle one.
func (a *Attachment) Suspect(l *transport.Link) {
	a.mu.Lock()
	attached := slices.ContainsFunc(a.slots, func(s *slot) bool { return s.link == l })
	urged := attached && a.rounds.Urge(time.Now(), a.cfg.ProbeInterval)
	a.mu.Unlock()
	if urged {
		l.Log().Info().Msg("supernode did not acknowledge a query in time; pinging at the probe interval")
		select {
		case a.urged <- struct{}{}:
		default:
		}
	}
}

type silentLink struct {
	l      *transport.Link
	silent time.Duration
}

// check notes which links heard from their supernode since the last check,
// and returns those silent too long while our network was shown to work,
// and whether a STUN answer from elsewhere is wanted to tell.
func (a *Attachment) check(now time.Time) (dead []silentLink, ask bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var attached []*slot
	var lives []*Liveness
	for _, s := range a.slots {
		if s.link != nil {
			s.hear(now)
			attached = append(attached, s)
			lives = append(lives, &s.live)
		}
	}
	silent, ask := a.rounds.Check(now, lives)
	for _, sl := range silent {
		dead = append(dead, silentLink{attached[sl.Index].link, sl.Silent})
	}
	return dead, ask
}

// hear notes a packet from the slot's supernode since the last look.
func (s *slot) hear(now time.Time) { s.live.Hear(now, s.link.PacketsReceived()) }

// askOthers sends STUN Binding requests to two supernodes we are not attached
// to, and notes when one answers: our network works, so supernodes silent
// since before the request went are gone.
func (a *Attachment) askOthers() {
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
		if err != nil || held[addr] || a.claims.Down(now, addr) {
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
	a.rounds.Asking()
	a.mu.Unlock()
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		every := a.cfg.ProbeInterval
		ctx, cancel := context.WithTimeout(a.ctx, 2*every)
		defer cancel()
		var uas []*net.UDPAddr
		for _, c := range cands {
			if ua, err := net.ResolveUDPAddr("udp", c); err == nil {
				uas = append(uas, ua)
			}
		}
		_, err := a.cfg.Node().Punch(ctx, uas, every)
		a.mu.Lock()
		a.rounds.Asked(err == nil, now, time.Now())
		a.mu.Unlock()
	}()
}

// checkLeft asks a supernode just left as silent whether it is still there,
// and makes the leaf wary of leaving the next if it is.
func (a *Attachment) checkLeft(l *transport.Link) {
	defer a.wg.Done()
	ua, ok := l.RemoteAddr().(*net.UDPAddr)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(a.ctx, CheckLeftFor)
	defer cancel()
	_, err := a.cfg.Node().Reflexive(ctx, ua)
	if a.ctx.Err() != nil {
		return // closing: the check did not end
	}
	a.mu.Lock()
	a.leftChecked++
	if err != nil {
		a.mu.Unlock()
		return // gone, as we thought
	}
	a.leftStalled++
	wary := a.rounds.Stalled(time.Now())
	a.mu.Unlock()
	l.Log().Warn().Int("wary", wary).Msg("a supernode left as silent still answers: it was stalled, not gone; waiting longer before leaving one")
}

// LeftChecks counts the supernodes left as silent whose check has ended,
// and those of them that still answered: were stalled, not gone.
func (a *Attachment) LeftChecks() (checked, stalled int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.leftChecked, a.leftStalled
}

// Wary is how many doublings of the wait before a silent supernode is left
// are in force.
func (a *Attachment) Wary() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.rounds.Wary()
}

// Silences are how long each attached supernode has sent nothing, as of the
// last look at its link.
func (a *Attachment) Silences(now time.Time) []time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []time.Duration
	for _, s := range a.slots {
		if s.link != nil {
			out = append(out, now.Sub(s.live.Heard()))
		}
	}
	return out
}
