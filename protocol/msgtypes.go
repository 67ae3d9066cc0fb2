package protocol

import (
	"fmt"
	"strings"
)

// MsgType is the first byte of a frame. The list is append-only: a number, once
// given, keeps its meaning forever. The table below says, for each, since which
// version it exists, where it travels and which roles send it.
type MsgType uint8

const (
	TypeHello        MsgType = 0x01
	TypeWelcome      MsgType = 0x02
	TypeError        MsgType = 0x03
	TypePing         MsgType = 0x04
	TypePong         MsgType = 0x05
	TypePublish      MsgType = 0x06
	TypeUnpublish    MsgType = 0x07
	TypeQuery        MsgType = 0x08
	TypeHits         MsgType = 0x09
	TypeQueryDone    MsgType = 0x0a
	TypeSummary      MsgType = 0x0b
	TypeGetMeta      MsgType = 0x0c
	TypeMeta         MsgType = 0x0d
	TypeRequest      MsgType = 0x0e
	TypeBlock        MsgType = 0x0f
	TypeNATReport    MsgType = 0x10
	TypeNATStatus    MsgType = 0x11
	TypeSignal       MsgType = 0x12
	TypeRelayLoad    MsgType = 0x13
	TypeRelayAsk     MsgType = 0x14
	TypeRelayOK      MsgType = 0x15
	TypeJoin         MsgType = 0x16
	TypeBitfield     MsgType = 0x17
	TypeHave         MsgType = 0x18
	TypeInterest     MsgType = 0x19
	TypeNoInterest   MsgType = 0x1a
	TypeChoke        MsgType = 0x1b
	TypeUnchoke      MsgType = 0x1c
	TypeCancel       MsgType = 0x1d
	TypePeers        MsgType = 0x1e
	TypeReject       MsgType = 0x1f
	TypeMembers      MsgType = 0x20
	TypeUserPut      MsgType = 0x21
	TypeUserGet      MsgType = 0x22
	TypeUserReply    MsgType = 0x23
	TypeUserStore    MsgType = 0x24
	TypeDeliver      MsgType = 0x25
	TypeDelivered    MsgType = 0x26
	TypeCandidacy    MsgType = 0x27
	TypePromote      MsgType = 0x28
	TypePromoted     MsgType = 0x29
	TypeRedirect     MsgType = 0x2a
	TypeCertificate  MsgType = 0x2b
	TypeSummaries    MsgType = 0x2c
	TypeSummaryWant  MsgType = 0x2d
	TypeTermPuts     MsgType = 0x2e
	TypeTermLookup   MsgType = 0x2f
	TypeTermHolders  MsgType = 0x30
	TypeMemberTree   MsgType = 0x31
	TypeMemberDigest MsgType = 0x32
	TypeMemberWant   MsgType = 0x33
)

// Protocol versions this build speaks. A hello carries a range; the answer picks
// the highest version both sides have.
const (
	MinVersion uint16 = 1
	MaxVersion uint16 = 12
)

// VersionSignal is the first version with NAT reports, connection signalling and
// relays.
const VersionSignal uint16 = 2

// VersionSwarm is the first version with swarm streams: have-maps, interest,
// choking and cancels between peers that exchange pieces both ways.
const VersionSwarm uint16 = 3

// VersionMembers is the first version with the gossiped list of live supernodes.
const VersionMembers uint16 = 4

// VersionUsers is the first version with the username directory and
// deliveries to a user's inbox.
const VersionUsers uint16 = 5

// VersionElection is the first version with candidacies, promotions and
// redirects: supernodes over their leaf limit promoting leaves.
const VersionElection uint16 = 6

// VersionAdmission is the first version with admission: certificate chains
// in hellos, welcomes and member entries, and certificates for promoted
// supernodes.
const VersionAdmission uint16 = 7

// VersionMemberNews is the first version whose supernodes pass on changes to
// the member list, with reports of supernodes gone, instead of issuing their
// entries every round.
const VersionMemberNews uint16 = 9

// Streams is a set of the places a message travels.
type Streams uint8

const (
	// StreamHandshake: the first frame of a message stream each way (hello,
	// then welcome or error).
	StreamHandshake Streams = 1 << iota
	// StreamMessage: the message stream after the handshake.
	StreamMessage
	// StreamTransfer: the other streams of a transfer connection (downloads,
	// swarms, deliveries).
	StreamTransfer

	streamAny = StreamHandshake | StreamMessage | StreamTransfer
)

// Roles is a set of roles: those that may send a message.
type Roles uint8

// AnyRole holds every role.
const AnyRole Roles = 1<<RoleLeaf | 1<<RoleSupernode | 1<<RoleTransfer | 1<<RoleProbe | 1<<RoleRelay

// RolesOf is the set of rs.
func RolesOf(rs ...Role) Roles {
	var s Roles
	for _, r := range rs {
		s |= 1 << r
	}
	return s & AnyRole
}

// Has reports whether r is in the set.
func (s Roles) Has(r Role) bool { return r <= RoleRelay && s&(1<<r) != 0 }

func (s Roles) String() string {
	var names []string
	for r := RoleLeaf; r <= RoleRelay; r++ {
		if s.Has(r) {
			names = append(names, r.String())
		}
	}
	if len(names) == 0 {
		return "no role"
	}
	return strings.Join(names, " or ")
}

// Listener is the role of the side that accepts a connection whose hello
// declares r: the supernode a leaf, a supernode or a relay dials, the peer a
// transfer connection reaches, the node a probe tests.
func (r Role) Listener() Role {
	switch r {
	case RoleLeaf, RoleSupernode, RoleRelay:
		return RoleSupernode
	}
	return r
}

// MsgInfo is what the protocol says of one message type.
type MsgInfo struct {
	Type    MsgType
	Name    string
	Since   uint16  // the version that introduced it
	Streams Streams // where it travels
	Senders Roles   // the roles that send it
	new     func() Message
}

// New returns a zero message of the type, to decode into.
func (i *MsgInfo) New() Message { return i.new() }

// info builds the entry of the message type *T, whose code is what its Type
// method says, so a struct's code is written in that one place.
func info[T any, P interface {
	*T
	Message
}](name string, since uint16, on Streams, senders Roles) MsgInfo {
	return MsgInfo{Type: P(new(T)).Type(), Name: name, Since: since, Streams: on, Senders: senders,
		new: func() Message { return P(new(T)) }}
}

const (
	fromLeaf      = Roles(1 << RoleLeaf)
	fromSupernode = Roles(1 << RoleSupernode)
	fromTransfer  = Roles(1 << RoleTransfer)
	fromRelay     = Roles(1 << RoleRelay)
	fromListener  = fromSupernode | fromTransfer | Roles(1<<RoleProbe) // those that answer a hello
)

// messageTypes is every message type, in type order. Entries are only ever
// added at the end.
var messageTypes = [...]MsgInfo{
	info[Hello]("hello", 1, StreamHandshake, AnyRole),
	info[Welcome]("welcome", 1, StreamHandshake, fromListener),
	info[Error]("error", 1, streamAny, AnyRole),
	info[Ping]("ping", 1, StreamMessage, AnyRole),
	info[Pong]("pong", 1, StreamMessage, AnyRole),
	info[Publish]("publish", 1, StreamMessage, fromLeaf),
	info[Unpublish]("unpublish", 1, StreamMessage, fromLeaf),
	info[Query]("query", 1, StreamMessage, fromLeaf|fromSupernode),
	info[Hits]("hits", 1, StreamMessage, fromSupernode),
	info[QueryDone]("query_done", 1, StreamMessage, fromSupernode),
	info[Summary]("summary", 1, StreamMessage, fromSupernode),
	info[GetMeta]("get_meta", 1, StreamTransfer, fromTransfer),
	info[Meta]("meta", 1, StreamTransfer, fromTransfer),
	info[Request]("request", 1, StreamTransfer, fromTransfer),
	info[Block]("block", 1, StreamTransfer, fromTransfer),
	info[NATReport]("nat_report", VersionSignal, StreamMessage, fromLeaf),
	info[NATStatus]("nat_status", VersionSignal, StreamMessage, fromSupernode),
	info[Signal]("signal", VersionSignal, StreamMessage, fromLeaf|fromSupernode),
	info[RelayLoad]("relay_load", VersionSignal, StreamMessage, fromRelay),
	info[RelayAsk]("relay_ask", VersionSignal, StreamMessage, fromLeaf),
	info[RelayOK]("relay_ok", VersionSignal, StreamMessage, fromSupernode),
	info[Join]("join", VersionSwarm, StreamTransfer, fromTransfer),
	info[Bitfield]("bitfield", VersionSwarm, StreamTransfer, fromTransfer),
	info[Have]("have", VersionSwarm, StreamTransfer, fromTransfer),
	info[Interest]("interested", VersionSwarm, StreamTransfer, fromTransfer),
	info[NoInterest]("not_interested", VersionSwarm, StreamTransfer, fromTransfer),
	info[Choke]("choke", VersionSwarm, StreamTransfer, fromTransfer),
	info[Unchoke]("unchoke", VersionSwarm, StreamTransfer, fromTransfer),
	info[Cancel]("cancel", VersionSwarm, StreamTransfer, fromTransfer),
	info[Peers]("peers", VersionSwarm, StreamTransfer, fromTransfer),
	info[Reject]("reject", VersionSwarm, StreamTransfer, fromTransfer),
	info[Members]("members", VersionMembers, StreamMessage, fromSupernode),
	info[UserPut]("user_put", VersionUsers, StreamMessage, fromLeaf|fromSupernode),
	info[UserGet]("user_get", VersionUsers, StreamMessage, fromLeaf|fromSupernode),
	info[UserReply]("user_reply", VersionUsers, StreamMessage, fromSupernode),
	info[UserStore]("user_store", VersionUsers, StreamMessage, fromSupernode),
	info[Deliver]("deliver", VersionUsers, StreamTransfer, fromTransfer),
	info[Delivered]("delivered", VersionUsers, StreamTransfer, fromTransfer),
	info[Candidacy]("candidacy", VersionElection, StreamMessage, fromLeaf),
	info[Promote]("promote", VersionElection, StreamMessage, fromSupernode),
	info[Promoted]("promoted", VersionElection, StreamMessage, fromLeaf),
	info[Redirect]("redirect", VersionElection, StreamMessage, fromSupernode),
	info[Certificate]("certificate", VersionAdmission, StreamMessage, fromSupernode),
	info[Summaries]("summaries", VersionOneHop, StreamMessage, fromSupernode),
	info[SummaryWant]("summary_want", VersionOneHop, StreamMessage, fromSupernode),
	info[TermPuts]("term_puts", VersionKeyRing, StreamMessage, fromSupernode),
	info[TermLookup]("term_lookup", VersionKeyRing, StreamMessage, fromSupernode),
	info[TermHolders]("term_holders", VersionKeyRing, StreamMessage, fromSupernode),
	info[MemberTree]("member_tree", VersionMemberTree, StreamMessage, fromSupernode),
	info[MemberDigest]("member_digest", VersionMemberTree, StreamMessage, fromSupernode),
	info[MemberWant]("member_want", VersionMemberTree, StreamMessage, fromSupernode),
}

var byType = indexTypes()

// indexTypes indexes the table by type byte. A table out of type order, with
// a gap, or with a code twice is a bug of this package: it panics at start.
func indexTypes() (idx [256]*MsgInfo) {
	for i := range messageTypes {
		m := &messageTypes[i]
		if int(m.Type) != i+1 || m.Name == "" || m.Since < 1 || m.Since > MaxVersion {
			panic(fmt.Sprintf("protocol: message table entry %d is %s (0x%02x, v%d)", i, m.Name, uint8(m.Type), m.Since))
		}
		idx[m.Type] = m
	}
	return idx
}

// Lookup is the table's entry for t.
func Lookup(t MsgType) (*MsgInfo, bool) {
	i := byType[t]
	return i, i != nil
}

func newMessage(t MsgType) Message {
	if i := byType[t]; i != nil {
		return i.new()
	}
	return nil
}

func (t MsgType) String() string {
	if i := byType[t]; i != nil {
		return i.Name
	}
	return fmt.Sprintf("type_0x%02x", uint8(t))
}

// Supports reports whether a connection that negotiated version has message
// type t.
func Supports(version uint16, t MsgType) bool {
	i := byType[t]
	return i != nil && i.Since <= version
}

// CheckVersion is Supports as an error: nil, ErrUnknownType, or
// ErrUnsupportedVersion for a type newer than version.
func CheckVersion(t MsgType, version uint16) error {
	i := byType[t]
	switch {
	case i == nil:
		return fmt.Errorf("%w: 0x%02x", ErrUnknownType, uint8(t))
	case i.Since > version:
		return fmt.Errorf("%w: %s is a v%d message, the connection speaks v%d", ErrUnsupportedVersion, t, i.Since, version)
	}
	return nil
}

// CheckIncoming decides from a frame's header whether a message stream takes
// it after the handshake: the type exists in the version the connection
// negotiated, travels on the message stream, and is one a sender holding a
// role in from may send. A refused frame is a protocol error: the receiver
// closes the connection.
func CheckIncoming(t MsgType, version uint16, from Roles) error {
	if err := CheckVersion(t, version); err != nil {
		return err
	}
	i := byType[t]
	switch {
	case i.Streams&StreamMessage != 0:
	case i.Streams&StreamHandshake != 0:
		return fmt.Errorf("%w: %s after the handshake", ErrBadRequest, t)
	default:
		return fmt.Errorf("%w: %s belongs on a transfer stream, not the message stream", ErrBadRequest, t)
	}
	if i.Senders&from == 0 {
		return fmt.Errorf("%w: %s from a %s; only a %s sends it", ErrForbidden, t, from, i.Senders)
	}
	return nil
}

// CheckTransfer decides from a frame's header whether a transfer stream (a
// download, swarm or delivery stream) takes it: the type exists in the
// version the connection negotiated and travels on transfer streams. Which
// of those a stream takes at which point is its handler's to decide.
func CheckTransfer(t MsgType, version uint16) error {
	if err := CheckVersion(t, version); err != nil {
		return err
	}
	i := byType[t]
	if i.Streams&StreamTransfer == 0 {
		where := "the message stream"
		if i.Streams&StreamMessage == 0 {
			where = "the handshake"
		}
		return fmt.Errorf("%w: %s belongs on %s, not a transfer stream", ErrBadRequest, t, where)
	}
	return nil
}
