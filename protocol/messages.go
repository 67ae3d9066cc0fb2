package protocol

import (
	"bytes"
	"fmt"
	"math"
	"sync"

	"github.com/vmihailenco/msgpack/v5"
)

// ALPN is the TLS application protocol of every QUIC connection in the overlay.
const ALPN = "supernet/1"

// Bounds on what a single message may carry, checked after decoding; checkBody
// already bounded the allocation itself.
const (
	MaxNameLen       = 1024
	MaxQueryLen      = 256
	MaxAddrs         = 8
	MaxWelcomeAddrs  = 64 // other supernodes a Welcome may list
	MaxAddrLen       = 128
	MaxFilesPerFrame = 512
	MaxHitsPerFrame  = 256
	MaxSourcesPerHit = 64
	MaxMembers       = 256     // supernode entries in one members message
	MaxUserRecords   = 64      // username records in one user_store message
	MaxFileNameLen   = 255     // a delivered file's name
	MaxDeliverSize   = 1 << 40 // bytes one delivery may carry
	MaxUserHops      = 24      // supernode hops of a user_put or user_get: about 2 log2 N for 4096 supernodes
	MaxIDsPerFrame   = 4096
	MaxSummaryLevels = 8
	MaxHops          = 8
	MaxBlockLen      = 1 << 19
	MaxPieceHashes   = 16384
)

// Role says what a connection is for; the hello declares it.
type Role uint8

const (
	RoleLeaf      Role = 1 // a peer attaching to its supernode
	RoleSupernode Role = 2 // a supernode linking to another
	RoleTransfer  Role = 3 // a peer fetching content from another peer
	RoleProbe     Role = 4 // a supernode dialling a leaf back to test reachability
	RoleRelay     Role = 5 // a relay reporting its load to a supernode
)

func (r Role) String() string {
	switch r {
	case RoleLeaf:
		return "leaf"
	case RoleSupernode:
		return "supernode"
	case RoleTransfer:
		return "transfer"
	case RoleProbe:
		return "probe"
	case RoleRelay:
		return "relay"
	}
	return fmt.Sprintf("role_%d", uint8(r))
}

// Message is one decoded frame. The set of implementations is closed: a type switch
// over the types below covers every message.
type Message interface {
	Type() MsgType
	validate() error
}

// AddrList is a list of "host:port" addresses, and SupernodeList a welcome's
// list of other supernodes. Their own types let the decoder cap their lengths
// (MaxAddrs, MaxWelcomeAddrs) and refuse empty entries as they arrive.
type (
	AddrList      []string
	SupernodeList []string
)

// QueryID names one search across the overlay, for duplicate suppression and for
// routing hits back.
type QueryID [16]byte

func (q QueryID) String() string { return fmt.Sprintf("%x", q[:]) }

// Hello opens every connection, from the dialling side.
type Hello struct {
	MinVersion uint16   `msgpack:"v0"`
	MaxVersion uint16   `msgpack:"v1"`
	Role       Role     `msgpack:"r"`
	Name       string   `msgpack:"n,omitempty"` // username, for leaves
	Addrs      AddrList `msgpack:"a,omitempty"` // addresses the sender can be reached at
	Agent      string   `msgpack:"ag,omitempty"`
	// Chain admits the sender to the role it claims: supernode or relay (v7).
	Chain Chain `msgpack:"ch,omitempty"`
	// RelayProof is a relay's proof of the secret it shares with the
	// supernodes, bound to this connection (v7; see RelayProof).
	RelayProof []byte `msgpack:"rp,omitempty"`
	// Direct asks a supernode for a link that carries direct queries only,
	// not a neighbour's (v8; see One-hop summaries).
	Direct bool `msgpack:"o,omitempty"`
	// Relayed says the sender dials from a relay allocation it lives on,
	// so the link runs through that relay (v12).
	Relayed bool `msgpack:"rl,omitempty"`
}

// Welcome accepts a Hello.
type Welcome struct {
	Version  uint16        `msgpack:"v"`
	Role     Role          `msgpack:"r"`
	Observed string        `msgpack:"o,omitempty"` // the dialler's address as the listener sees it
	Addrs    SupernodeList `msgpack:"a,omitempty"` // other supernodes the listener knows
	Agent    string        `msgpack:"ag,omitempty"`
	// STUNAlt is a second STUN port of the listener, so a leaf can tell an
	// endpoint-dependent NAT mapping from an independent one (v2).
	STUNAlt string `msgpack:"sa,omitempty"`
	// Network and Chain show that a supernode listener is admitted to its
	// overlay (v7).
	Network NetworkID `msgpack:"nw,omitempty"`
	Chain   Chain     `msgpack:"ch,omitempty"`
	// Dual are the listener's addresses in both IP families, where a leaf
	// that attached over one proves its address in the other (v12; see
	// Address proofs).
	Dual AddrList `msgpack:"du,omitempty"`
}

// Error refuses a request. Ref names the query it is about, if any.
type Error struct {
	Code    Status  `msgpack:"c"`
	Message string  `msgpack:"m,omitempty"`
	Ref     QueryID `msgpack:"q,omitempty"`
}

// Ping asks for a Pong with the same Seq; either side may send it. Pad is
// there to be long: a node that lost the connection, a restarted supernode,
// answers a packet with a QUIC stateless reset only when the packet is
// longer than the reset it would send (42 bytes in quic-go), and a lone
// small ping is not. NewPing pads, so a leaf learns at its next ping that
// its supernode restarted, not when the silence timeout runs out.
type Ping struct {
	Seq uint64 `msgpack:"s"`
	Pad []byte `msgpack:"p,omitempty"`
}

// PingPad is how many bytes NewPing pads a ping with.
const PingPad = 16

var pingPad = make([]byte, PingPad) // only ever read

// NewPing is ping seq, padded as Ping says.
func NewPing(seq uint64) *Ping { return &Ping{Seq: seq, Pad: pingPad} }

// Pong answers a Ping. Every, from a supernode to its leaf, is the least
// time in milliseconds the leaf should leave between its pings (0: no wish):
// a supernode with many leaves spreads their pings out this way.
type Pong struct {
	Seq   uint64 `msgpack:"s"`
	Every uint32 `msgpack:"e,omitempty"`
}

// FileRecord describes one shared file.
type FileRecord struct {
	ID   ContentID `msgpack:"i"`
	Name string    `msgpack:"n"`
	Size int64     `msgpack:"s"`
	Tags Tags      `msgpack:"t,omitempty"`
}

// Publish adds files to a leaf's index on its supernode. Reset first drops
// everything the leaf published before; a leaf sends its whole share as a Reset
// frame followed by plain frames.
type Publish struct {
	Reset bool         `msgpack:"r,omitempty"`
	Files []FileRecord `msgpack:"f"`
}

// Unpublish removes files from a leaf's index.
type Unpublish struct {
	IDs []ContentID `msgpack:"i"`
}

// Query asks for content by keywords, or by content ID when CID is set. Hops is the
// number of supernode-to-supernode steps it may still take.
type Query struct {
	ID    QueryID   `msgpack:"q"`
	Text  string    `msgpack:"t,omitempty"`
	CID   ContentID `msgpack:"c,omitempty"`
	Hops  uint8     `msgpack:"h"`
	Limit uint16    `msgpack:"l,omitempty"`
	// Direct marks a query sent one hop by a supernode that chose this one
	// from its summary (v8): it is answered from this index alone, and the
	// hits come in the QueryDone when they fit.
	Direct bool `msgpack:"o,omitempty"`
}

// Source is a peer that has a file.
type Source struct {
	Peer  PeerID   `msgpack:"p"`
	Name  string   `msgpack:"n,omitempty"`
	Addrs AddrList `msgpack:"a"`
	// SN is the supernode the source is attached to, where signalling for a
	// connection to it goes (v2).
	SN  *PeerID `msgpack:"sn,omitempty"`
	NAT NATType `msgpack:"nt,omitempty"` // v2
}

// Hit is one file found, with the sources one supernode knows for it.
type Hit struct {
	FileRecord `msgpack:",inline"`
	Sources    []Source `msgpack:"src"`
	Score      float32  `msgpack:"sc,omitempty"`
}

// Hits streams results of a query back along the path it came.
type Hits struct {
	ID   QueryID `msgpack:"q"`
	Hits []Hit   `msgpack:"h"`
}

// QueryDone ends a query on a link: no more Hits for ID will follow on it.
// Supernodes counts the supernodes that searched their index for it.
type QueryDone struct {
	ID         QueryID `msgpack:"q"`
	Status     Status  `msgpack:"s,omitempty"`
	Supernodes uint32  `msgpack:"n,omitempty"`
	// Hits are the last hits for ID, sent with the end (v8, to a Direct
	// query only: an older supernode would not read them).
	Hits []Hit `msgpack:"h,omitempty"`
}

// Summary carries one level of a supernode's attenuated Bloom filter: the keys
// reachable through the sender within Level more supernode hops. Depth is the
// number of levels the sender keeps, so a receiver can drop levels it no longer gets.
type Summary struct {
	Level  uint8  `msgpack:"l"`
	Depth  uint8  `msgpack:"d"`
	Filter []byte `msgpack:"f"`
}

// GetMeta opens a transfer stream for a content ID; the answer is Meta or Error.
type GetMeta struct {
	ID ContentID `msgpack:"i"`
}

// Meta is a file's metadata; the receiver checks that it hashes to the content ID.
type Meta struct {
	ID        ContentID `msgpack:"i"`
	Name      string    `msgpack:"n,omitempty"`
	Size      int64     `msgpack:"s"`
	PieceSize int64     `msgpack:"ps"`
	Hashes    []byte    `msgpack:"h"`
}

// Request asks for Length bytes of a piece starting at Offset, on a transfer stream.
type Request struct {
	Piece  uint32 `msgpack:"p"`
	Offset uint32 `msgpack:"o,omitempty"`
	Length uint32 `msgpack:"n"`
}

// Join opens a swarm stream for a content ID; the answer is Meta or Error. SN
// and NAT describe the joiner, so the other side can tell further peers how to
// reach it (see Peers).
type Join struct {
	ID  ContentID `msgpack:"i"`
	SN  *PeerID   `msgpack:"sn,omitempty"`
	NAT NATType   `msgpack:"nt,omitempty"`
}

// Bitfield is the sender's have-map: bit i (most significant bit of each byte
// first) is set when the sender has piece i verified. It is the first frame each
// side sends on a swarm stream after the metadata.
type Bitfield struct {
	Bits []byte `msgpack:"b"`
}

// Have announces one more verified piece.
type Have struct {
	Piece uint32 `msgpack:"p"`
}

// Interest says the sender wants pieces the receiver has.
type Interest struct{}

// NoInterest says the sender wants nothing the receiver has.
type NoInterest struct{}

// Choke says the sender will not answer requests; those pending are dropped.
type Choke struct{}

// Unchoke says the sender answers requests again.
type Unchoke struct{}

// Cancel withdraws a Request that has not been answered yet.
type Cancel struct {
	Piece  uint32 `msgpack:"p"`
	Offset uint32 `msgpack:"o,omitempty"`
	Length uint32 `msgpack:"n"`
}

// Reject says the sender will not answer a Request: the receiver frees the
// block and stops asking the sender for that piece until a Have names it again.
type Reject struct {
	Piece  uint32 `msgpack:"p"`
	Offset uint32 `msgpack:"o,omitempty"`
	Length uint32 `msgpack:"n"`
}

// Members is a supernode's list of the live supernodes, each entry signed by
// its supernode: what supernodes gossip to each other and hand to their leaves.
type Members struct {
	Members []MemberRecord `msgpack:"m"`
	// Gone are reports of supernodes gone (v9), passed on like entries.
	Gone []MemberGone `msgpack:"g,omitempty"`
	// Of, in a list to a leaf that samples the overlay, is how many
	// supernodes the sender knows to be live; 0 when the list has them all.
	Of uint32 `msgpack:"n,omitempty"`
}

// UserPut stores a username record in the directory: from a leaf to its
// supernode, then from supernode to supernode toward the name's owner on the
// ring. H counts the supernode hops so far.
type UserPut struct {
	ID   QueryID    `msgpack:"i"`
	Rec  UserRecord `msgpack:"r"`
	Hops uint8      `msgpack:"h,omitempty"`
}

// UserGet looks a username up, travelling like UserPut.
type UserGet struct {
	ID   QueryID `msgpack:"i"`
	Name string  `msgpack:"u"`
	Hops uint8   `msgpack:"h,omitempty"`
	// Down is set by a replica that lacks the record and asks the next one:
	// the index of the replica asked (the owner is 0).
	Down uint8 `msgpack:"d,omitempty"`
}

// UserReply answers a UserPut or UserGet, back along the path it came: the
// record (for a get that found it), or why not, and the hops it took.
type UserReply struct {
	ID      QueryID     `msgpack:"i"`
	Code    Status      `msgpack:"c,omitempty"`
	Message string      `msgpack:"m,omitempty"`
	Rec     *UserRecord `msgpack:"r,omitempty"`
	Hops    uint8       `msgpack:"h,omitempty"`
}

// UserStore hands records to a supernode that should hold them: copies from
// the owner to its successors, and records moved when the ring changes.
type UserStore struct {
	Recs []UserRecord `msgpack:"r"`
}

// Deliver opens a stream that hands a file to the receiver's inbox: Size raw
// bytes follow the frame. The receiver answers with Delivered once the bytes
// are stored and their SHA-256 matches, or with Error (and a reset) when it
// refuses them.
type Deliver struct {
	Name   string `msgpack:"n"`
	Size   int64  `msgpack:"s"`
	SHA256 []byte `msgpack:"h"`
	From   string `msgpack:"u,omitempty"` // the sender's username, if it has one
}

// Delivered says a delivery is stored, under Name in the receiver's inbox.
type Delivered struct {
	Name string `msgpack:"n"`
}

// Peers tells the other side of a swarm stream of more peers in the swarm
// (peer exchange), so a swarm forms before the tracker knows its members.
type Peers struct {
	Peers []Source `msgpack:"p"`
}

// Block carries the bytes of a Request. Its frame body is the msgpack array
// [piece, offset] followed by the raw data, so the data is never re-encoded.
type Block struct {
	Piece  uint32
	Offset uint32
	Data   []byte
}

func (*Hello) Type() MsgType      { return TypeHello }
func (*Welcome) Type() MsgType    { return TypeWelcome }
func (*Error) Type() MsgType      { return TypeError }
func (*Ping) Type() MsgType       { return TypePing }
func (*Pong) Type() MsgType       { return TypePong }
func (*Publish) Type() MsgType    { return TypePublish }
func (*Unpublish) Type() MsgType  { return TypeUnpublish }
func (*Query) Type() MsgType      { return TypeQuery }
func (*Hits) Type() MsgType       { return TypeHits }
func (*QueryDone) Type() MsgType  { return TypeQueryDone }
func (*Summary) Type() MsgType    { return TypeSummary }
func (*GetMeta) Type() MsgType    { return TypeGetMeta }
func (*Meta) Type() MsgType       { return TypeMeta }
func (*Request) Type() MsgType    { return TypeRequest }
func (*Block) Type() MsgType      { return TypeBlock }
func (*Join) Type() MsgType       { return TypeJoin }
func (*Bitfield) Type() MsgType   { return TypeBitfield }
func (*Have) Type() MsgType       { return TypeHave }
func (*Interest) Type() MsgType   { return TypeInterest }
func (*NoInterest) Type() MsgType { return TypeNoInterest }
func (*Choke) Type() MsgType      { return TypeChoke }
func (*Unchoke) Type() MsgType    { return TypeUnchoke }
func (*Cancel) Type() MsgType     { return TypeCancel }
func (*Reject) Type() MsgType     { return TypeReject }
func (*Members) Type() MsgType    { return TypeMembers }
func (*Peers) Type() MsgType      { return TypePeers }
func (*UserPut) Type() MsgType    { return TypeUserPut }
func (*UserGet) Type() MsgType    { return TypeUserGet }
func (*UserReply) Type() MsgType  { return TypeUserReply }
func (*UserStore) Type() MsgType  { return TypeUserStore }
func (*Deliver) Type() MsgType    { return TypeDeliver }
func (*Delivered) Type() MsgType  { return TypeDelivered }

type blockHeader struct {
	_msgpack struct{} `msgpack:",as_array"`
	Piece    uint32
	Offset   uint32
}

var encPool = sync.Pool{New: func() any {
	e := msgpack.NewEncoder(nil)
	e.UseCompactInts(true)
	return e
}}

func appendBody(dst []byte, m Message) ([]byte, error) {
	if err := m.validate(); err != nil {
		return dst, fmt.Errorf("encode %s: %w", m.Type(), err)
	}
	buf := bytes.NewBuffer(dst)
	enc := encPool.Get().(*msgpack.Encoder)
	defer encPool.Put(enc)
	enc.Reset(buf)
	enc.UseCompactInts(true)
	var v any = m
	if b, ok := m.(*Block); ok {
		v = &blockHeader{Piece: b.Piece, Offset: b.Offset}
	}
	if err := enc.Encode(v); err != nil {
		return dst, fmt.Errorf("encode %s: %w", m.Type(), err)
	}
	if b, ok := m.(*Block); ok {
		buf.Write(b.Data)
	}
	return buf.Bytes(), nil
}

// Decode parses a frame body of type t. Block data aliases body; every other
// message owns its memory.
func Decode(t MsgType, body []byte) (Message, error) {
	m := newMessage(t)
	if m == nil {
		return nil, fmt.Errorf("%w: 0x%02x", ErrUnknownType, uint8(t))
	}
	if b, ok := m.(*Block); ok {
		n, err := checkPrefix(body)
		if err != nil {
			return nil, fmt.Errorf("decode block: %w", err)
		}
		var h blockHeader
		if err := msgpack.Unmarshal(body[:n], &h); err != nil {
			return nil, fmt.Errorf("decode block: %w: %v", ErrMalformed, err)
		}
		b.Piece, b.Offset, b.Data = h.Piece, h.Offset, body[n:]
	} else {
		if err := checkBody(body); err != nil {
			return nil, fmt.Errorf("decode %s: %w", t, err)
		}
		if err := msgpack.Unmarshal(body, m); err != nil {
			return nil, fmt.Errorf("decode %s: %w: %v", t, ErrMalformed, err)
		}
	}
	if err := m.validate(); err != nil {
		return nil, fmt.Errorf("decode %s: %w", t, err)
	}
	return m, nil
}

func invalid(format string, args ...any) error { return malformed(format, args...) }

func checkStr(field, s string, max int) error {
	if len(s) > max {
		return invalid("%s of %d bytes (max %d)", field, len(s), max)
	}
	return nil
}

func checkAddrs(a []string) error {
	if len(a) > MaxAddrs {
		return invalid("%d addresses (max %d)", len(a), MaxAddrs)
	}
	for _, s := range a {
		if err := checkStr("address", s, MaxAddrLen); err != nil {
			return err
		}
	}
	return nil
}

func (m *Hello) validate() error {
	if m.MinVersion == 0 || m.MinVersion > m.MaxVersion {
		return invalid("version range %d-%d", m.MinVersion, m.MaxVersion)
	}
	if m.Role < RoleLeaf || m.Role > RoleRelay {
		return invalid("role %d", m.Role)
	}
	if err := checkStr("name", m.Name, 64); err != nil {
		return err
	}
	if err := checkStr("agent", m.Agent, 64); err != nil {
		return err
	}
	if len(m.RelayProof) != 0 && len(m.RelayProof) != RelayProofLen {
		return invalid("relay proof of %d bytes (want %d)", len(m.RelayProof), RelayProofLen)
	}
	if err := m.Chain.Check(); err != nil {
		return err
	}
	return checkAddrs(m.Addrs)
}

func (m *Welcome) validate() error {
	if m.Version == 0 {
		return invalid("version 0")
	}
	if err := checkStr("observed address", m.Observed, MaxAddrLen); err != nil {
		return err
	}
	if err := checkStr("STUN address", m.STUNAlt, MaxAddrLen); err != nil {
		return err
	}
	if err := checkAddrs(m.Dual); err != nil {
		return err
	}
	if err := checkStr("agent", m.Agent, 64); err != nil {
		return err
	}
	if len(m.Addrs) > MaxWelcomeAddrs {
		return invalid("%d supernode addresses (max %d)", len(m.Addrs), MaxWelcomeAddrs)
	}
	if err := m.Chain.Check(); err != nil {
		return err
	}
	for _, s := range m.Addrs {
		if err := checkStr("address", s, MaxAddrLen); err != nil {
			return err
		}
	}
	return nil
}

func (m *Error) validate() error { return checkStr("message", m.Message, 1024) }
func (m *Ping) validate() error  { return nil }
func (m *Pong) validate() error  { return nil }

func (f *FileRecord) validate() error {
	if f.Size < 0 {
		return invalid("negative size")
	}
	if f.Name == "" {
		return invalid("empty file name")
	}
	if f.ID.IsZero() {
		return invalid("zero content ID")
	}
	if err := checkStr("file name", f.Name, MaxNameLen); err != nil {
		return err
	}
	t := f.Tags
	for _, s := range []string{t.Title, t.Artist, t.Album, t.Genre} {
		if err := checkStr("tag", s, 256); err != nil {
			return err
		}
	}
	return nil
}

func (m *Publish) validate() error {
	if len(m.Files) > MaxFilesPerFrame {
		return invalid("%d files in one frame (max %d)", len(m.Files), MaxFilesPerFrame)
	}
	for i := range m.Files {
		if err := m.Files[i].validate(); err != nil {
			return err
		}
	}
	return nil
}

func (m *Unpublish) validate() error {
	if len(m.IDs) > MaxIDsPerFrame {
		return invalid("%d IDs in one frame (max %d)", len(m.IDs), MaxIDsPerFrame)
	}
	for i := range m.IDs {
		if err := m.IDs[i].wireCheck(); err != nil {
			return err
		}
	}
	return nil
}

func (m *Query) validate() error {
	if m.Text == "" && m.CID.IsZero() {
		return invalid("query with neither text nor content ID")
	}
	if m.Hops > MaxHops {
		return invalid("hop limit %d (max %d)", m.Hops, MaxHops)
	}
	return checkStr("query", m.Text, MaxQueryLen)
}

func (m *Hits) validate() error { return validHits(m.Hits) }

func validHits(hits []Hit) error {
	if len(hits) > MaxHitsPerFrame {
		return invalid("%d hits in one frame (max %d)", len(hits), MaxHitsPerFrame)
	}
	for i := range hits {
		h := &hits[i]
		if err := h.FileRecord.validate(); err != nil {
			return err
		}
		if math.IsNaN(float64(h.Score)) || math.IsInf(float64(h.Score), 0) {
			return invalid("hit score %v", h.Score) // NaN breaks every sort by score
		}
		if len(h.Sources) == 0 || len(h.Sources) > MaxSourcesPerHit {
			return invalid("%d sources in a hit (1 to %d)", len(h.Sources), MaxSourcesPerHit)
		}
		if err := checkSources(h.Sources); err != nil {
			return err
		}
	}
	return nil
}

func checkSources(srcs []Source) error {
	for _, s := range srcs {
		if err := s.wireCheck(); err != nil {
			return err
		}
		if err := checkAddrs(s.Addrs); err != nil {
			return err
		}
		if err := checkStr("source name", s.Name, 64); err != nil {
			return err
		}
		if s.NAT > NATUDPBlocked {
			return invalid("source NAT type %d", s.NAT)
		}
	}
	return nil
}

func (m *QueryDone) validate() error { return validHits(m.Hits) }

func (m *Summary) validate() error {
	if m.Depth == 0 || m.Depth > MaxSummaryLevels || m.Level >= m.Depth {
		return invalid("summary level %d of %d", m.Level, m.Depth)
	}
	return nil
}

func (m *GetMeta) validate() error { return nil }

func (m *Meta) validate() error {
	if m.Size < 0 || m.PieceSize <= 0 {
		return invalid("size %d, piece size %d", m.Size, m.PieceSize)
	}
	if len(m.Hashes)%32 != 0 || len(m.Hashes)/32 > MaxPieceHashes {
		return invalid("%d bytes of piece hashes", len(m.Hashes))
	}
	return checkStr("file name", m.Name, MaxNameLen)
}

func (m *Request) validate() error {
	if m.Length == 0 || m.Length > MaxBlockLen {
		return invalid("request of %d bytes (1 to %d)", m.Length, MaxBlockLen)
	}
	return nil
}

func (m *Join) validate() error {
	if m.NAT > NATUDPBlocked {
		return invalid("NAT type %d", m.NAT)
	}
	return nil
}

func (m *Peers) validate() error {
	if len(m.Peers) > MaxSourcesPerHit {
		return invalid("%d peers in one frame (max %d)", len(m.Peers), MaxSourcesPerHit)
	}
	return checkSources(m.Peers)
}

func (m *Have) validate() error       { return nil }
func (m *Interest) validate() error   { return nil }
func (m *NoInterest) validate() error { return nil }
func (m *Choke) validate() error      { return nil }
func (m *Unchoke) validate() error    { return nil }

func (m *Bitfield) validate() error {
	if len(m.Bits) > MaxPieceHashes/8 {
		return invalid("have-map of %d bytes (max %d)", len(m.Bits), MaxPieceHashes/8)
	}
	return nil
}

func (m *Cancel) validate() error {
	if m.Length == 0 || m.Length > MaxBlockLen {
		return invalid("cancel of %d bytes (1 to %d)", m.Length, MaxBlockLen)
	}
	return nil
}

func (m *Members) validate() error {
	if len(m.Members) > MaxMembers {
		return invalid("%d members (max %d)", len(m.Members), MaxMembers)
	}
	for i := range m.Members {
		if err := m.Members[i].Check(); err != nil {
			return err
		}
	}
	if len(m.Gone) > MaxMembers {
		return invalid("%d gone reports (max %d)", len(m.Gone), MaxMembers)
	}
	for i := range m.Gone {
		if err := m.Gone[i].Check(); err != nil {
			return err
		}
	}
	return nil
}

func (m *UserPut) validate() error {
	if m.Hops > MaxUserHops {
		return invalid("user_put after %d hops (max %d)", m.Hops, MaxUserHops)
	}
	return m.Rec.Check()
}

func (m *UserGet) validate() error {
	if m.Hops > MaxUserHops {
		return invalid("user_get after %d hops (max %d)", m.Hops, MaxUserHops)
	}
	if m.Down > MaxUserSNs {
		return invalid("user_get down to replica %d", m.Down)
	}
	return CheckUsername(m.Name)
}

func (m *UserReply) validate() error {
	if len(m.Message) > MaxNameLen {
		return invalid("user_reply message of %d bytes (max %d)", len(m.Message), MaxNameLen)
	}
	if m.Hops > MaxUserHops {
		return invalid("user_reply after %d hops (max %d)", m.Hops, MaxUserHops)
	}
	if m.Rec != nil {
		return m.Rec.Check()
	}
	return nil
}

func (m *UserStore) validate() error {
	if len(m.Recs) > MaxUserRecords {
		return invalid("%d user records (max %d)", len(m.Recs), MaxUserRecords)
	}
	for i := range m.Recs {
		if err := m.Recs[i].Check(); err != nil {
			return err
		}
	}
	return nil
}

// CheckFileName accepts a plain file name: no path separators, not "." or
// "..", no control characters, at most 255 bytes.
func CheckFileName(name string) error {
	if name == "" || len(name) > MaxFileNameLen || name == "." || name == ".." {
		return invalid("file name %q", name)
	}
	for _, c := range name {
		if c == '/' || c == '\\' || c < 0x20 || c == 0x7f {
			return invalid("file name %q: no separators or control characters", name)
		}
	}
	return nil
}

func (m *Deliver) validate() error {
	if err := CheckFileName(m.Name); err != nil {
		return err
	}
	if m.Size < 0 || m.Size > MaxDeliverSize {
		return invalid("delivery of %d bytes (0 to %d)", m.Size, int64(MaxDeliverSize))
	}
	if len(m.SHA256) != 32 {
		return invalid("delivery hash of %d bytes (want 32)", len(m.SHA256))
	}
	if m.From != "" {
		return CheckUsername(m.From)
	}
	return nil
}

func (m *Delivered) validate() error { return CheckFileName(m.Name) }

func (m *Reject) validate() error {
	if m.Length == 0 || m.Length > MaxBlockLen {
		return invalid("reject of %d bytes (1 to %d)", m.Length, MaxBlockLen)
	}
	return nil
}

func (m *Block) validate() error {
	if len(m.Data) > MaxBlockLen {
		return invalid("block of %d bytes (max %d)", len(m.Data), MaxBlockLen)
	}
	return nil
}

// IsZero lets msgpack omit an unset ID.
func (q QueryID) IsZero() bool { return q == QueryID{} }
