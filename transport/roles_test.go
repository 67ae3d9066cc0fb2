package transport

import (
	"context"
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/rs/zerolog"

	"github.com/supernet-p2p/supernet/protocol"
)

// pair is one link seen from both ends.
type pair struct {
	dialler, listener *Link
}

// linkPair dials srv from cli with hello and returns both ends.
func linkPair(t *testing.T, cli, srv *Node, hello *protocol.Hello) pair {
	t.Helper()
	return linkPairWith(t, srv, hello, func(ctx context.Context) (*Link, *protocol.Welcome, error) {
		return cli.Dial(ctx, srv.Addr().String(), srv.Identity().ID, hello)
	})
}

// linkPairWith is linkPair with the dial done by dial.
func linkPairWith(t *testing.T, srv *Node, hello *protocol.Hello, dial func(context.Context) (*Link, *protocol.Welcome, error)) pair {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := make(chan *Link, 1)
	go func() {
		in, err := srv.Accept(ctx)
		if err != nil {
			got <- nil
			return
		}
		l, _ := in.Accept(&protocol.Welcome{Role: hello.Role.Listener()})
		got <- l
	}()
	dl, _, err := dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ll := <-got
	if ll == nil {
		t.Fatal("not accepted")
	}
	t.Cleanup(func() {
		dl.Close(nil)
		ll.Close(nil)
	})
	return pair{dl, ll}
}

// recvOne waits for one message on l, within 5 s.
func recvOne(t *testing.T, l *Link) (protocol.Message, error) {
	t.Helper()
	type res struct {
		m   protocol.Message
		err error
	}
	ch := make(chan res, 1)
	go func() {
		m, err := l.Recv()
		ch <- res{m, err}
	}()
	select {
	case r := <-ch:
		return r.m, r.err
	case <-time.After(5 * time.Second):
		l.Close(nil)
		t.Fatal("nothing arrived")
		return nil, nil
	}
}

// closedWith waits for l to close and returns the reason the other side
// gave, as QUIC carried it.
func closedWith(t *testing.T, l *Link) string {
	t.Helper()
	select {
	case <-l.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the link stayed open")
	}
	var ae *quic.ApplicationError
	if !errors.As(l.Err(), &ae) || !ae.Remote || ae.ErrorCode != CodeProtocol {
		t.Fatalf("closed with %v, want a protocol error from the other side", l.Err())
	}
	return ae.ErrorMessage
}

// sample is a valid message of type ty.
func sample(t *testing.T, ty protocol.MsgType) protocol.Message {
	t.Helper()
	id, err := protocol.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	rec := protocol.UserRecord{Name: "alice", Seq: 1, Expires: time.Now().Add(time.Hour).Unix()}
	rec.Sign(id)
	_, network, _ := ed25519.GenerateKey(nil)
	var m protocol.Message
	switch ty {
	case protocol.TypeQuery:
		m = &protocol.Query{Text: "hey jude", Hops: 2}
	case protocol.TypeSummary:
		m = &protocol.Summary{Level: 0, Depth: 1}
	case protocol.TypeSignal:
		m = &protocol.Signal{ID: 1, Kind: protocol.SignalRequest}
	case protocol.TypeUserPut:
		m = &protocol.UserPut{Rec: rec}
	case protocol.TypeUserGet:
		m = &protocol.UserGet{Name: "alice"}
	case protocol.TypePromote:
		m = &protocol.Promote{LeafLimit: 10, GossipMS: 1000, TimeoutMS: 5000}
	case protocol.TypePromoted:
		m = &protocol.Promoted{Peer: id.ID, Addrs: []string{"127.0.0.1:9"}}
	case protocol.TypeRedirect:
		m = &protocol.Redirect{Target: id.ID.String() + "@127.0.0.1:9"}
	case protocol.TypeTermLookup:
		m = &protocol.TermLookup{ID: protocol.QueryID{1}, Keys: protocol.KeyList{7}}
	case protocol.TypeCertificate:
		m = &protocol.Certificate{Chain: protocol.Admit(network, id.Key.Public().(ed25519.PublicKey), protocol.CertSupernode, time.Now().Add(time.Hour))}
	default:
		i, _ := protocol.Lookup(ty)
		m = i.New()
	}
	if _, err := protocol.AppendFrame(nil, m); err != nil {
		t.Fatalf("sample %s: %v", ty, err)
	}
	return m
}

var roles = []protocol.Role{protocol.RoleLeaf, protocol.RoleSupernode, protocol.RoleTransfer, protocol.RoleProbe, protocol.RoleRelay}

// TestLinkHonestTraffic: on a link of every role, every message-stream type
// either side's role may send arrives, in order, and the link stays open.
func TestLinkHonestTraffic(t *testing.T) {
	srv, cli := newNode(t, true), newNode(t, false)
	for _, r := range roles {
		t.Run(r.String(), func(t *testing.T) {
			p := linkPair(t, cli, srv, &protocol.Hello{Role: r})
			for _, side := range []struct {
				from, to *Link
				role     protocol.Role
			}{{p.dialler, p.listener, r}, {p.listener, p.dialler, r.Listener()}} {
				var sent []protocol.MsgType
				for ty := range protocol.MsgType(255) {
					i, ok := protocol.Lookup(ty)
					if !ok || i.Streams&protocol.StreamMessage == 0 || !i.Senders.Has(side.role) {
						continue
					}
					if err := side.from.Send(sample(t, ty)); err != nil {
						t.Fatalf("send %s: %v", ty, err)
					}
					sent = append(sent, ty)
				}
				if len(sent) < 3 { // ping, pong and error at least
					t.Fatalf("a %s sends only %v", side.role, sent)
				}
				for _, ty := range sent {
					m, err := recvOne(t, side.to)
					if err != nil || m.Type() != ty {
						t.Fatalf("from a %s: got %v, %v; want %s", side.role, m, err, ty)
					}
				}
			}
			select {
			case <-p.dialler.Done():
				t.Fatalf("link closed: %v", p.dialler.Err())
			case <-p.listener.Done():
				t.Fatalf("link closed: %v", p.listener.Err())
			default:
			}
		})
	}
}

// TestLinkRefusesWrongSender: a message the sender's role may not send
// closes the link, from either end, with a reason naming it.
func TestLinkRefusesWrongSender(t *testing.T) {
	srv, cli := newNode(t, true), newNode(t, false)
	tests := []struct {
		name     string
		role     protocol.Role // the dialler's
		fromDial bool
		m        protocol.Message
		want     error
		reason   string
	}{
		{"members from a leaf", protocol.RoleLeaf, true, &protocol.Members{}, protocol.ErrForbidden, "members from a leaf"},
		{"publish from a supernode to its leaf", protocol.RoleLeaf, false, &protocol.Publish{}, protocol.ErrForbidden, "publish from a supernode"},
		{"nat_report between supernodes", protocol.RoleSupernode, true, &protocol.NATReport{}, protocol.ErrForbidden, "nat_report from a supernode"},
		{"user_store from a leaf", protocol.RoleLeaf, true, &protocol.UserStore{}, protocol.ErrForbidden, "user_store from a leaf"},
		{"candidacy from a supernode", protocol.RoleSupernode, false, &protocol.Candidacy{}, protocol.ErrForbidden, "candidacy from a supernode"},
		{"query from a relay", protocol.RoleRelay, true, &protocol.Query{Text: "x"}, protocol.ErrForbidden, "query from a relay"},
		{"relay_load from a leaf", protocol.RoleLeaf, true, &protocol.RelayLoad{UDP: "127.0.0.1:9"}, protocol.ErrForbidden, "relay_load from a leaf"},
		{"hits on a transfer link", protocol.RoleTransfer, false, &protocol.Hits{}, protocol.ErrForbidden, "hits from a transfer"},
		{"members on a probe", protocol.RoleProbe, false, &protocol.Members{}, protocol.ErrForbidden, "members from a probe"},
		{"join on the message stream", protocol.RoleTransfer, true, &protocol.Join{}, protocol.ErrBadRequest, "join belongs on a transfer stream"},
		{"hello after the handshake", protocol.RoleLeaf, true, &protocol.Hello{MinVersion: 1, MaxVersion: 1, Role: protocol.RoleLeaf}, protocol.ErrBadRequest, "hello after the handshake"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := linkPair(t, cli, srv, &protocol.Hello{Role: tt.role})
			from, to := p.dialler, p.listener
			if !tt.fromDial {
				from, to = to, from
			}
			// An honest frame first: it arrives, the refused one after it does not.
			if err := from.Send(&protocol.Ping{Seq: 1}); err != nil {
				t.Fatal(err)
			}
			if err := from.Send(tt.m); err != nil {
				t.Fatal(err)
			}
			if m, err := recvOne(t, to); err != nil || m.Type() != protocol.TypePing {
				t.Fatalf("first %v, %v; want the ping", m, err)
			}
			m, err := recvOne(t, to)
			if m != nil || !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.reason) {
				t.Fatalf("got %v, %v; want %v naming %q", m, err, tt.want, tt.reason)
			}
			select {
			case <-to.Done():
			default:
				t.Fatal("the receiver kept the link open")
			}
			if !errors.Is(to.Err(), tt.want) {
				t.Errorf("receiver's link closed with %v", to.Err())
			}
			if reason := closedWith(t, from); !strings.Contains(reason, tt.reason) {
				t.Errorf("sender told %q", reason)
			}
		})
	}
}

// TestLinkRefusesNewerType: a type newer than the version the link
// negotiated closes it as soon as its header arrives, before the body; the
// same type on a link of its version passes.
func TestLinkRefusesNewerType(t *testing.T) {
	id, err := protocol.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	// A frame gets a minute, so only the refusal can close the link in time.
	listener, err := New(Config{Identity: id, Conn: udpOn(t, honestIP), Listen: true, Frames: FrameTimeouts{Fixed: time.Minute},
		Log: zerolog.New(zerolog.NewTestWriter(t))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { listener.Close() })
	a := newAttacker(t, honestIP)
	for _, tt := range []struct {
		max     uint16
		refused bool
	}{
		{protocol.VersionElection - 1, true},
		{protocol.VersionElection, false},
		{protocol.MaxVersion, false},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, err := a.dial(ctx, listener, Control)
		if err != nil {
			t.Fatal(err)
		}
		s, err := c.OpenStreamSync(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := protocol.WriteMessage(s, &protocol.Hello{Role: protocol.RoleLeaf, MinVersion: 1, MaxVersion: tt.max}); err != nil {
			t.Fatal(err)
		}
		in, err := listener.Accept(ctx)
		if err != nil {
			t.Fatal(err)
		}
		l, err := in.Accept(&protocol.Welcome{Role: protocol.RoleSupernode})
		if err != nil {
			t.Fatal(err)
		}
		if l.Version != tt.max {
			t.Fatalf("negotiated v%d", l.Version)
		}
		frame, _ := protocol.AppendFrame(nil, &protocol.Candidacy{Eligible: true})
		if tt.refused {
			frame = frame[:protocol.HeaderSize] // the body never comes
		}
		if _, err := s.Write(frame); err != nil {
			t.Fatal(err)
		}
		m, err := recvOne(t, l)
		switch {
		case tt.refused && (m != nil || !errors.Is(err, protocol.ErrUnsupportedVersion)):
			t.Errorf("v%d: got %v, %v; want ErrUnsupportedVersion", tt.max, m, err)
		case tt.refused:
			select {
			case <-c.Context().Done():
			case <-ctx.Done():
				t.Fatalf("v%d: the dialler's connection stayed open", tt.max)
			}
			var ae *quic.ApplicationError
			if !errors.As(context.Cause(c.Context()), &ae) || !strings.Contains(ae.ErrorMessage, "candidacy is a v6 message, the connection speaks v5") {
				t.Errorf("closed with %v", context.Cause(c.Context()))
			}
		case err != nil || m.Type() != protocol.TypeCandidacy:
			t.Errorf("v%d: got %v, %v; want the candidacy", tt.max, m, err)
		}
		l.Close(nil)
		c.CloseWithError(0, "")
		cancel()
	}
}

// TestLinkSendRefusesNewerType: Send will not queue a type the link's
// version lacks, and the link goes on.
func TestLinkSendRefusesNewerType(t *testing.T) {
	srv, cli := newNode(t, true), newNode(t, false)
	p := linkPair(t, cli, srv, &protocol.Hello{Role: protocol.RoleLeaf, MinVersion: 1, MaxVersion: protocol.VersionMembers})
	if err := p.listener.Send(&protocol.Redirect{Target: cli.Identity().ID.String() + "@127.0.0.1:9"}); !errors.Is(err, protocol.ErrUnsupportedVersion) {
		t.Fatalf("redirect on a v4 link: %v", err)
	}
	if err := p.listener.Send(&protocol.Members{}); err != nil {
		t.Fatal(err)
	}
	if m, err := recvOne(t, p.dialler); err != nil || m.Type() != protocol.TypeMembers {
		t.Fatalf("got %v, %v", m, err)
	}
}

// TestLinkAnySender: a node configured for other designs' traffic takes any
// type its version has from any role, still not a newer one.
func TestLinkAnySender(t *testing.T) {
	mk := func() *Node {
		id, _ := protocol.GenerateIdentity()
		n, err := New(Config{Identity: id, Conn: udpOn(t, "127.0.0.1"), Listen: true, AnySender: true, Log: zerolog.New(zerolog.NewTestWriter(t))})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		return n
	}
	p := linkPair(t, mk(), mk(), &protocol.Hello{Role: protocol.RoleTransfer})
	for _, side := range [][2]*Link{{p.dialler, p.listener}, {p.listener, p.dialler}} {
		for _, m := range []protocol.Message{&protocol.Query{Text: "x"}, &protocol.Hits{}, &protocol.Publish{}} {
			if err := side[0].Send(m); err != nil {
				t.Fatal(err)
			}
			if got, err := recvOne(t, side[1]); err != nil || got.Type() != m.Type() {
				t.Fatalf("got %v, %v; want %s", got, err, m.Type())
			}
		}
	}
}

// A listener whose welcome declares another role than the one dialled is
// refused: the role decides which messages the link takes from it, so a
// transfer peer answering a leaf's dial as a supernode gets no link.
func TestDialRefusesWelcomeOfAnotherRole(t *testing.T) {
	for _, c := range []struct {
		hello, welcome protocol.Role
		ok             bool
	}{
		{protocol.RoleLeaf, protocol.RoleSupernode, true},
		{protocol.RoleTransfer, protocol.RoleTransfer, true},
		{protocol.RoleLeaf, protocol.RoleTransfer, false},
		{protocol.RoleLeaf, protocol.RoleLeaf, false},
		{protocol.RoleTransfer, protocol.RoleSupernode, false},
		{protocol.RoleSupernode, 0, false},
	} {
		srv, cli := newNode(t, true), newNode(t, false)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		go func() {
			if in, err := srv.Accept(ctx); err == nil {
				in.Accept(&protocol.Welcome{Role: c.welcome})
			}
		}()
		l, _, err := cli.Dial(ctx, srv.Addr().String(), srv.Identity().ID, &protocol.Hello{Role: c.hello})
		cancel()
		switch {
		case c.ok && err != nil:
			t.Errorf("hello %s, welcome %s: %v", c.hello, c.welcome, err)
		case !c.ok && err == nil:
			t.Errorf("hello %s, welcome %s: a link was made", c.hello, c.welcome)
		case !c.ok && !errors.Is(err, protocol.ErrForbidden):
			t.Errorf("hello %s, welcome %s: %v, want ErrForbidden", c.hello, c.welcome, err)
		}
		if l != nil {
			l.Close(nil)
		}
	}
}
