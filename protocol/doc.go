// Package protocol is the wire of the supernet overlay: how a message is framed and
// encoded, which messages exist and what they mean, and how a node proves who it is.
// This comment is the specification. An implementation that follows it, in any
// language, interoperates with this one; where they disagree, the golden bytes in
// golden_test.go say what this implementation sends.
//
// The package does no I/O of its own beyond the io.Reader or io.Writer it is given,
// and keeps no state between calls. It is not the transport (package transport runs QUIC and STUN
// on one UDP socket), not routing (package supernode decides where queries go), not
// the search index or the Bloom filters of summaries (package index), and not the
// hashing of files into pieces and content IDs (package content).
//
// # Connections and streams
//
// Nodes talk over QUIC (RFC 9000) with TLS 1.3. The ALPN protocol is "supernet/1"
// (the constant ALPN); both sides present a certificate (see Identity). One UDP socket per node
// carries QUIC, STUN and hole punching.
//
// The dialling side opens the first bidirectional stream of a connection: the
// message stream. Its first frame is a Hello. The listener answers with a Welcome,
// or with an Error and then closes the connection. From then on either side sends
// any message its role allows, in any order, on that stream; frames are processed in
// the order they arrive.
//
// A connection whose Hello declares the transfer role (a peer fetching content from
// another peer) also carries transfer streams: every further bidirectional stream
// starts with Join (a swarm stream, v3, opened by either side; see Swarms) or GetMeta
// (a one-way download, opened by the downloader; see Transfers). On such a
// connection the message stream carries only Ping and Pong.
//
// A stream carries nothing but whole frames, back to back. After a frame it refuses
// (too large, unknown, malformed) a receiver cannot resynchronise; it may answer with
// an Error and then closes the stream, and for the message stream the connection.
//
// What a receiver takes, whoever sends it:
//
//   - Before the hello, nothing else: the listener reads the first frame's header
//     and refuses any type other than hello, and any hello body over 4096 bytes
//     (MaxHelloSize), without reading the body. The dialler takes only welcome or
//     error in answer, of at most 16384 bytes (MaxWelcomeSize).
//   - Bodies are read as their bytes arrive; nothing is allocated for a length
//     before the bytes are there. Once a frame's first byte has arrived, the whole
//     frame must arrive within 10 s plus one second for every 8 KiB of it (a 1 MiB
//     frame: 138 s); waiting between frames has no limit, as QUIC keep-alives and
//     its idle timeout watch the connection.
//   - Streams: on a connection that is not a transfer connection the listener
//     grants the dialler one bidirectional stream (the message stream) and no more;
//     each side of a transfer connection grants 64, and serves at most 32 at once.
//     No unidirectional streams are used or granted. A transfer stream's first
//     frame must begin within 10 s of the stream opening and be at most 16 KiB;
//     later frames on it are at most 256 KiB.
//   - Liveness: a leaf pings each of its supernodes every 500 ms, and leaves one it
//     has not heard from for 1.5 s (longer for one that usually answers slowly)
//     once another supernode has shown that its own network works; a supernode
//     must answer pings promptly. A supernode drops a leaf that has pinged it and
//     then sent nothing for 5 s.
//   - A node refuses connection attempts beyond its caps on handshakes in flight
//     and on connections from one IPv4 address or IPv6 /64 before any TLS work,
//     with QUIC's CONNECTION_REFUSED, and under load asks for a QUIC Retry to
//     check the source address first. See package transport for the values.
//
// # Frames
//
// Every message is one frame: a 5-byte header and a body.
//
//	 0        1        2        3        4        5
//	+--------+--------+--------+--------+--------+-----------------------+
//	|  type  |    body length n (uint32, big-endian)   |  body (n bytes)  |
//	+--------+--------+--------+--------+--------+-----------------------+
//
// The type byte is a message type from the table below. The body length must not
// exceed MaxFrameSize (1 MiB = 1048576 bytes). A receiver checks the length against
// that cap as soon as it has the header, before it reads or allocates anything for
// the body, and refuses a larger frame (ErrFrameTooLarge). A sender never builds one.
// A frame of an unknown type is refused (ErrUnknownType); since types newer than the
// negotiated version are never sent, it is a protocol error, not something to skip.
//
// The body is one msgpack value (https://github.com/msgpack/msgpack/blob/master/spec.md)
// and nothing else: no bytes may follow it. The one exception is Block (below).
//
// Example: Ping{Seq: 7} is the frame
//
//	04 00000004 81 a1 73 07
//	^  ^        ^  ^     ^
//	|  |        |  |     seq: positive fixint 7
//	|  |        |  key "s": fixstr of 1 byte
//	|  |        fixmap of 1 entry
//	|  body length 4
//	type 0x04 ping
//
// # Msgpack conventions
//
// A message body is a msgpack map with string keys: the short keys in the tables
// below (they are the msgpack tags of the Go structs). Nested records (a file, a hit,
// a source, tags) are maps too. Encoders write keys in table order; receivers accept
// them in any order. A key must not appear twice.
//
// Keys marked ? are optional (omitempty): the sender leaves them out when the value is
// zero (0, false, "", an empty list, an all-zero ID), and a missing key means zero.
// Unmarked keys are always written, even when zero. Receivers ignore keys they do not
// know, whatever their value, so a later version can add optional keys to a message
// without breaking older receivers.
//
//   - Integers are written in their shortest msgpack form (fixint, uint8, uint16, ...).
//     A receiver accepts any integer encoding. Only the fields typed int below may be
//     negative; a value must fit its field's width (uint8, uint16, uint32, uint64).
//   - Strings are msgpack str, UTF-8 by convention (not checked).
//   - Byte strings and fixed-size IDs are msgpack bin: content IDs and peer IDs are
//     bin 8 of 32 bytes (c4 20 ...), query IDs bin 8 of 16 bytes (c4 10 ...). An ID
//     is always sent at its full size.
//   - Lists are msgpack arrays; nil (c0) and an empty array both mean an empty list.
//   - The score of a hit is a float32 (ca); booleans are c2 and c3.
//   - msgpack ext types and the timestamp type are not used.
//
// This implementation decodes with vmihailenco/msgpack v5 and is, beyond the bounds
// below, lenient in ways a sender must not rely on: an ID shorter than its size is
// zero-padded, an integer too wide for its field is truncated, and a record sent as
// an array of all its fields in order is accepted. Senders write maps of full-size
// IDs and in-range integers.
//
// # Bounds
//
// A receiver bounds what a body can make it allocate before it allocates it. Before
// handing a body to a msgpack decoder it walks the encoding and refuses the body
// (ErrMalformed) if
//
//   - it is empty, truncated, or has bytes after its one value (Block: after its header);
//   - it uses the reserved byte c1;
//   - a str, bin or ext claims more bytes than remain in the body;
//   - an array claims more elements than bytes remain, or a map more than half as many
//     entries (every element takes at least one byte);
//   - an array or map has more than 65536 elements;
//   - a value is nested inside more than 16 arrays and maps.
//
// So the 5-byte body dd ff ff ff ff (an array of 2^32-1 elements, which msgpack v5
// would allocate up front: 34 GB even at 8 bytes an element) costs nothing. Every
// list is also refused by count before anything is allocated for it, at the
// per-frame limits in the tables (512 files, 256 hits, 64 sources per hit, 4096 IDs,
// 256 members, 64 user records, 4 certificates, 3 supernodes in a user record, 8
// addresses, 64 supernodes in a welcome, 1024 term batches, 4096 keys, 64 holder
// lists), and at its first element that cannot be valid: a zero content or peer
// ID, a file without a name, a source without a peer, a member, user record or
// certificate whose key or signature has the wrong size, an empty address, a term
// batch without a keeper or a publisher. So a body of 1-byte nil elements cannot
// become a slice of large zero records. A list key that appears twice in one map
// is refused, so one body cannot make the same list again and again.
//
// With these rules, decoding a body of n bytes allocates at most 16n + 8192 bytes,
// whatever its type (the 8 KiB cover the fixed cost of a small message); the
// test TestDecodeExpansion builds, for every type, bodies that fill every list to
// its cap with the cheapest elements the decoder takes, and checks it. A frame of
// 1 MiB therefore costs at most about 16 MiB while it is decoded; the worst
// measured is about 8 bytes per byte (a list of 1-byte keys, each 8 bytes once
// decoded).
//
// After decoding, every message is checked against the limits in the tables (lengths,
// counts, ranges). A message that fails is malformed too. A sender checks the same
// limits and refuses to encode a message that breaks them.
//
// # Messages
//
// The type numbers are an append-only list: a number once given keeps its meaning
// forever and is never reused. A node never sends a type newer than the negotiated
// version. Types marked v1 exist since version 1, v2 since version 2.
//
// The direction column says which roles send a type (in code: Lookup(t).Senders).
// On the message stream a sender holds the role its hello declared when it
// dialled, and when it listens: supernode on a leaf, supernode or relay
// connection, transfer on a transfer connection, probe on a probe
// (Role.Listener). After the handshake a receiver refuses, as it refuses a
// malformed frame, and from the header alone (CheckIncoming): a type newer than
// the negotiated version (ErrUnsupportedVersion), a hello or welcome, a type of
// transfer streams (ErrBadRequest), and a type the sender's role does not send
// (ErrForbidden). On a transfer stream it refuses, from the header alone
// (CheckTransfer), a type newer than the negotiated version and a type of the
// handshake or the message stream, and ends that stream, answering error{c: 1}
// where it would answer any other bad request; the connection's other streams
// go on.
//
//	type  name        version  stream     direction
//	0x01  hello       v1       message    dialler -> listener, first frame
//	0x02  welcome     v1       message    listener -> dialler, answers hello
//	0x03  error       v1       any        either
//	0x04  ping        v1       message    either
//	0x05  pong        v1       message    either, answers ping
//	0x06  publish     v1       message    leaf -> its supernode
//	0x07  unpublish   v1       message    leaf -> its supernode
//	0x08  query       v1       message    leaf -> supernode, supernode -> supernode
//	0x09  hits        v1       message    supernode -> where the query came from
//	0x0a  query_done  v1       message    supernode -> where the query came from
//	0x0b  summary     v1       message    supernode -> neighbour supernode
//	0x0c  get_meta    v1       transfer   downloader -> source, first frame
//	0x0d  meta        v1       transfer   source -> downloader, answers get_meta
//	0x0e  request     v1       transfer   downloader -> source
//	0x0f  block       v1       transfer   source -> downloader, answers request
//	0x10  nat_report  v2       message    leaf -> its supernode
//	0x11  nat_status  v2       message    supernode -> leaf, answers nat_report
//	0x12  signal      v2       message    leaf <-> supernode <-> supernode
//	0x13  relay_load  v2       message    relay -> supernode
//	0x14  relay_ask   v2       message    leaf -> supernode (QUIC, or TLS over TCP)
//	0x15  relay_ok    v2       message    supernode -> leaf, answers relay_ask
//	0x16  join        v3       swarm      joiner -> peer, first frame
//	0x17  bitfield    v3       swarm      either, first frame after meta
//	0x18  have        v3       swarm      either
//	0x19  interested  v3       swarm      either
//	0x1a  not_interested v3    swarm      either
//	0x1b  choke       v3       swarm      either
//	0x1c  unchoke     v3       swarm      either
//	0x1d  cancel      v3       swarm      either
//	0x1e  peers       v3       swarm      either
//	0x1f  reject      v3       swarm      either
//	0x20  members     v4       message    supernode -> supernode, supernode -> leaf
//	0x21  user_put    v5       message    leaf -> supernode, supernode -> supernode
//	0x22  user_get    v5       message    leaf -> supernode, supernode -> supernode
//	0x23  user_reply  v5       message    supernode -> supernode, supernode -> leaf
//	0x24  user_store  v5       message    supernode -> supernode
//	0x25  deliver     v5       deliver    peer -> peer
//	0x26  delivered   v5       deliver    peer -> peer
//	0x27  candidacy   v6       message    leaf -> supernode
//	0x28  promote     v6       message    supernode -> leaf
//	0x29  promoted    v6       message    leaf -> supernode
//	0x2a  redirect    v6       message    supernode -> leaf
//	0x2b  certificate v7       message    supernode -> leaf
//	0x2c  summaries   v8       message    supernode -> supernode
//	0x2d  summary_want v8      message    supernode -> supernode
//	0x2e  term_puts   v10      message    supernode -> supernode
//	0x2f  term_lookup v10      message    supernode -> supernode
//	0x30  term_holders v10     message    supernode -> supernode, answers term_lookup
//	0x31  member_tree v11      message    supernode -> supernode
//	0x32  member_digest v11    message    supernode -> supernode
//	0x33  member_want v11      message    supernode -> supernode, answers member_digest
//
// On a swarm stream meta (0x0d), request (0x0e), block (0x0f) and error (0x03) are
// used as well, in both directions.
//
// Fields, by short key (? = optional), with their limits (the Max constants of this
// package, e.g. MaxAddrLen for an address):
//
//	hello (Hello)
//	  v0   uint16   lowest protocol version the sender speaks, >= 1
//	  v1   uint16   highest version it speaks, >= v0
//	  r    uint8    role of the connection: 1 leaf (a peer attaching to a supernode),
//	                2 supernode (a supernode linking to another), 3 transfer,
//	                4 probe (v2: a supernode dialling a leaf back), 5 relay (v2)
//	  n?   str      the user's name, from leaves; <= 64 bytes
//	  a?   [str]    addresses the sender can be reached at, "host:port"; <= 8 of <= 128 bytes
//	  ag?  str      software name and version; <= 64 bytes
//	  ch?  [cert]   v7: the chain admitting the sender to the role r claims (2 supernode,
//	                5 relay); <= 4 certificates (see Admission)
//	  rp?  bin 32   v7: a relay's proof of the secret it shares (see Admission)
//	  o?   bool     v8: with r = 2, a link for direct queries only, not a neighbour's (see
//	                One-hop summaries)
//	  rl?  bool     v12: the sender dials from a relay allocation it lives on
//
//	welcome (Welcome)
//	  v    uint16   the version chosen (see Versions), >= 1
//	  r    uint8    the listener's role on the connection (2 supernode, 3 transfer)
//	  o?   str      the dialler's address as the listener sees it; <= 128 bytes
//	  a?   [str]    other supernodes the listener knows, for failover; <= 64 of <= 128 bytes
//	  ag?  str      software name and version; <= 64 bytes
//	  nw?  bin 32   v7: the overlay's network key, from a supernode
//	  ch?  [cert]   v7: the chain admitting the supernode to that network
//	  du?  [str]    v12: the supernode's addresses in both IP families, where a leaf
//	                proves its address in the other one (see Address proofs); <= 8
//
//	cert (Cert): one link of a chain
//	  k    bin 32   the subject's ed25519 public key (its peer ID is the SHA-256 of it)
//	  r    uint8    roles, as bits: 1 supernode, 2 relay, 4 admit (may sign for others)
//	  e    int64    expiry, Unix seconds
//	  s    bin 64   ed25519 signature by the issuer (see Admission)
//
//	certificate (Certificate), v7: supernode to the leaf it promoted
//	  c    [cert]   the chain for the supernode the leaf runs; 1 to 4 certificates
//
//	error (Error)
//	  c    uint16   status code (see Status codes)
//	  m?   str      human-readable detail; <= 1024 bytes
//	  q?   bin 16   the query the error is about, if any
//
//	ping, pong (Ping, Pong)
//	  s    uint64   sequence number; a pong echoes the ping's
//
//	publish (Publish): adds files to the sender's share on its supernode
//	  r?   bool     reset: first drop everything this leaf published before
//	  f    [file]   <= 512 files
//	file (FileRecord), a map inside publish and, inlined, inside each hit
//	  i    bin 32   content ID
//	  n    str      file name, 1 to 1024 bytes
//	  s    int      size in bytes, >= 0
//	  t?   tags     media tags
//	tags (Tags)
//	  t? title, a? artist, l? album, g? genre: str, <= 256 bytes each;  y? int year
//
//	unpublish (Unpublish): removes files from the sender's share
//	  i    [bin 32] content IDs; <= 4096
//
//	query (Query)
//	  q    bin 16   query ID
//	  t?   str      keywords; <= 256 bytes
//	  c?   bin 32   content ID, to find sources of one file
//	  h    uint8    hop limit: supernode-to-supernode steps the query may still take; <= 8;
//	                from a leaf, 0 means the supernode's default
//	  l?   uint16   most hits wanted; 0: the supernode's default
//	  o?   bool     v8: direct, sent one hop by a supernode that chose this one from
//	                its summary (see One-hop summaries)
//	  At least one of t and c is set.
//
//	hits (Hits)
//	  q    bin 16   query ID
//	  h    [hit]    <= 256 hits
//	hit (Hit): the keys of a file (i, n, s, t?) and
//	  src  [source] peers that have the file, 1 to 64
//	  sc?  float32  relevance, higher is better; finite
//	source (Source)
//	  p    bin 32   peer ID
//	  n?   str      the peer's user name; <= 64 bytes
//	  a    [str]    its addresses; <= 8 of <= 128 bytes
//
//	query_done (QueryDone)
//	  q    bin 16   query ID
//	  s?   uint16   status: 0 ok, 5 timeout (part of the overlay did not answer in time)
//	  n?   uint32   supernodes that searched their index for this query on this branch
//	  h?   [hit]    v8: the last hits, in the answer to a direct query; <= 256
//
//	summary (Summary)
//	  l    uint8    level carried, < d
//	  d    uint8    depth: the number of levels the sender keeps, 1 to 8
//	  f    bin      the level's Bloom filter (see Summaries)
//
//	summaries (Summaries), v8
//	  u    [update] <= 4096 updates
//	update (SummaryUpdate): one version of one supernode's one-hop summary
//	  o    bin 32   origin: the supernode whose summary it is
//	  i?   uint64   the origin's incarnation
//	  v    uint64   version, > 0
//	  b?   uint64   the version d applies to; with d only, and below v
//	  f?   bin      the whole filter (see Summaries); <= 2^20 + 3 bytes
//	  d?   bin      the bits that changed since b, as uvarint gaps; <= 2^20 + 3 bytes
//	  l?   uint32   the origin's leaves when it issued the version
//	  s?   bin 64   the origin's signature; set exactly when f or d is
//	  At most one of f and d; neither is an announcement.
//
//	summary_want (SummaryWant), v8
//	  o    [bin 32] origins whose current summary is wanted; <= 4096
//	  h?   [uint64] v9: the version of each origin in o the sender holds, 0 for none;
//	                as many as o
//
//	term_puts (TermPuts), v10
//	  b    [batch]  <= 1024 batches
//	batch (TermBatch): what one publisher changed in its keys, for one keeper
//	  t    uint64   the keeper it is for, by ID prefix (see Keyword ring); not 0
//	  p    uint64   the publisher, by ID prefix: the supernode whose index keys
//	                they are; not 0
//	  i    uint64   the publisher's incarnation
//	  h    uint8    supernode hops it may still take, <= 32
//	  a?   [uint64] keys added; <= 4096
//	  d?   [uint64] keys removed; <= 4096
//	  At least one of a and d is set.
//
//	term_lookup (TermLookup), v10
//	  q    bin 16   query ID
//	  k    [uint64] keys whose holders are wanted; 1 to 64
//
//	term_holders (TermHolders), v10: answers term_lookup
//	  q    bin 16   the lookup's query ID
//	  l    [list]   a list for each key asked; <= 64
//	list (HolderList)
//	  k    uint64   the key
//	  h?   [uint64] the ID prefixes of the supernodes that hold it; <= 256, none 0
//	  m?   bool     the keeper holds more than h names: h is a random sample
//
//	get_meta (GetMeta)
//	  i    bin 32   content ID
//
//	meta (Meta)
//	  i    bin 32   content ID
//	  n?   str      file name; <= 1024 bytes
//	  s    int      size in bytes, >= 0
//	  ps   int      piece size in bytes, > 0
//	  h    bin      SHA-256 of each piece, concatenated: a multiple of 32 bytes,
//	                <= 16384 hashes
//
//	request (Request)
//	  p    uint32   piece index
//	  o?   uint32   offset within the piece
//	  n    uint32   length, 1 to 524288 (512 KiB)
//
//	block (Block): not a map, see below
//
//	join (Join), v3
//	  i    bin 32   content ID
//	  sn?  bin 32   the joiner's supernode, so the other side can pass it on in peers
//	  nt?  uint8    the joiner's NAT type (as nat_report's m)
//
//	bitfield (Bitfield), v3
//	  b    bin      have-map: bit i (the most significant bit of byte i/8 first) set
//	                when the sender has piece i verified; exactly ceil(pieces/8) bytes,
//	                spare bits zero; <= 2048 bytes
//
//	have (Have), v3
//	  p    uint32   a piece the sender now has verified, < pieces
//
//	interested, not_interested, choke, unchoke (Interest, NoInterest, Choke, Unchoke), v3:
//	an empty map each
//
//	cancel (Cancel), v3
//	  p    uint32   piece;  o?  uint32  offset;  n  uint32  length, 1 to 524288
//
//	members (Members), v4
//	  m    [member] live supernodes; <= 256
//	  g?   [gone]   v9: reports of supernodes gone; <= 256 (see Membership)
//	  n?   uint32   in a list to a leaf that samples the overlay: how many
//	                supernodes the sender knows live (absent: m is all of them);
//	                from v11 the entries of such a sample come without ch, and
//	                a leaf checks the chain in the welcome when it attaches
//	member (MemberRecord): one supernode's entry, signed by it
//	  k    bin 32   its ed25519 public key (its peer ID is the SHA-256 of it)
//	  a    [str]    where it listens; 1 to 8 of <= 128 bytes
//	  b    uint64   beat: raised by the supernode with every entry it issues
//	  l?   uint32   leaves attached;  c?  uint32  leaves it accepts at most
//	  s    bin 64   ed25519 signature (see Membership)
//	  in?  uint64   v7: incarnation, raised each time the supernode starts
//	  ch?  [cert]   v7: the chain admitting it as a supernode (not covered by s)
//
//	member_tree (MemberTree), v11
//	  e    [tree]   refreshed entries; <= 256 (see Membership)
//	tree (TreeEntry)
//	  r    member   the entry
//	  u    uint64   the end of the arc to pass it on over, an ID prefix
//
//	member_digest (MemberDigest), v11
//	  e    [digest] the live entries the sender holds; <= 4096 (see Membership)
//	digest (DigestEntry)
//	  p    uint64   the supernode, an ID prefix
//	  in?  uint64   the incarnation of its entry;  b  uint64  its beat
//
//	member_want (MemberWant), v11
//	  p    [uint64] supernodes of a digest whose entries the sender wants; <= 4096
//
//	reject (Reject), v3
//	  p    uint32   piece;  o?  uint32  offset;  n  uint32  length, 1 to 524288
//
//	user_put (UserPut), v5
//	  i    bin 16   request ID, chosen at random by the leaf
//	  r    user     the record to store
//	  h?   uint8    supernode hops so far, <= 24
//	user (UserRecord): a username's owner and where it is, signed by the owner
//	  u    str      username: 1 to 32 bytes of a-z 0-9, and after the first . _ -
//	  k    bin 32   the owner's ed25519 public key
//	  q    uint64   sequence: a record replaces one with a lower q
//	  e    int64    expiry, Unix seconds, at most 24 h ahead
//	  sn?  [bin 32] the supernodes the owner is attached to, <= 3
//	  a?   [str]    the owner's addresses, <= 8 of <= 128 bytes
//	  nt?  uint8    the owner's NAT type, as in nat_report
//	  s    bin 64   ed25519 signature (see Username directory)
//
//	user_get (UserGet), v5
//	  i    bin 16   request ID;  u  str  username;  h?  uint8  hops so far, <= 24
//	  d?   uint8    which replica is asked (0, the owner, unless set), <= 3
//
//	user_reply (UserReply), v5
//	  i    bin 16   the request's ID
//	  c?   uint16   status (0: stored, or found); m?  str  why not, <= 1024 bytes
//	  r?   user     the record found
//	  h?   uint8    supernode hops the request took to where it was answered
//
//	user_store (UserStore), v5
//	  r    [user]   records the receiver should hold, <= 64
//
//	deliver (Deliver), v5: opens a deliver stream; s raw bytes follow the frame
//	  n    str      file name: 1 to 255 bytes, no / or \ or control characters, not . or ..
//	  s    int64    size, 0 to 2^40
//	  h    bin 32   SHA-256 of the bytes
//	  u?   str      the sender's username
//
//	delivered (Delivered), v5
//	  n    str      the name the file was stored under in the receiver's inbox
//
//	candidacy (Candidacy), v6: leaf to supernode
//	  e?   bool     the leaf would lead;  w?  str  why not, <= 256 bytes (only without e)
//	  t?   uint32   seconds it has been up;  r?  uint64  its upload cap, bytes/s (0: none)
//
//	promote (Promote), v6: supernode to leaf
//	  l    uint32   leaf limit for the new supernode, 1 to 2^20
//	  g    uint32   member-list interval, ms, 10 to 60000
//	  t    uint32   member timeout, ms, above g and <= 600000
//
//	promoted (Promoted), v6: leaf to supernode, the answer to promote
//	  p?   bin 32   the new supernode's peer ID;  a?  [str]  where it listens,
//	                1 to 8 host:port of <= 128 bytes
//	  w?   str      why the leaf will not lead, <= 256 bytes (then no p or a)
//	  k?   bin 32   v7: the new supernode's public key (its SHA-256 is p), for its certificate
//
//	redirect (Redirect), v6: supernode to leaf
//	  t    str      the supernode to attach to instead, peerid@host:port
//	  w?   str      why, <= 256 bytes
//
//	peers (Peers), v3
//	  p    [source] other peers of the swarm the sender exchanges with, <= 64; each
//	                with p, sn and where known nt
//
//	nat_report (NATReport), v2
//	  m    uint8    mapping the leaf measured: 0 unknown, 1 none (public),
//	                2 endpoint-independent, 3 endpoint-dependent (symmetric),
//	                4 UDP blocked (the leaf lives on a relay allocation)
//	  r?   [str]    reflexive addresses STUN showed; <= 8 of <= 128 bytes
//	  pf?  [proof]  v12: addresses in the other IP family, <= 2, each {a: str, t: bin 16
//	                token} (see Address proofs)
//
//	nat_status (NATStatus), v2
//	  n    uint8    NAT type the supernode records for the leaf (as m above)
//	  p?   bool     a dial back to the leaf from another socket succeeded
//	  o?   str      the leaf's address as the supernode sees it
//	  pv?  [str]    v12: the proven addresses the supernode lists the leaf with
//
//	signal (Signal), v2: see Connection setup
//	  i    uint64   setup ID, chosen by the initiator
//	  k    uint8    1 request, 2 offer, 3 answer, 4 relayed, 5 fail
//	  f    bin 32   peer the signal is from;  fs  bin 32  its supernode
//	  t    bin 32   peer the signal is for;   ts  bin 32  its supernode, or zeros
//	  h?   uint8    supernode hops it may still take, <= 8
//	  nt?  uint8    NAT type of f, as the supernode of f recorded it
//	  a?   [str]    candidate addresses of f; <= 8 of <= 128 bytes
//	  pl?  uint8    plan: 1 direct, 2 reverse, 3 punch, 4 relay, 5 relay-reverse (v12)
//	  d?   uint32   milliseconds to wait before starting
//	  u?   bool     upgrade: only a direct path is wanted
//	  r?   map      relay credentials (as relay_ok's r)
//	  c?   uint16   status, for fail;  m?  str  message, <= 1024 bytes
//
//	relay_load (RelayLoad), v2
//	  u?, t?  str   the relay's TURN address over UDP and over TCP
//	  a    uint32   allocations;  c  uint32  capacity
//	  r    float64  bytes relayed per second, recently, >= 0
//	  6?   str      v12: the address IPv6 relayed addresses are on, when offered
//
//	relay_ask (RelayAsk), v2: an empty map
//
//	relay_ok (RelayOK), v2
//	  r    map      {u?: TURN/UDP address, t?: TURN/TCP address, n: username,
//	                 p: password, e: expiry in unix seconds, 6?: v12, allocate an
//	                 IPv6 relayed address}; strings <= 256 bytes
//	  o?   str      the asker's address as the supernode sees it
//
// # Block
//
// A Block frame's body is not one msgpack value. It is a msgpack array of two
// unsigned integers, [piece, offset], followed by the raw data to the end of the
// frame; the data length is the body length minus the header's. The data is neither
// a msgpack bin nor copied on decoding (Block.Data aliases the frame body), so a
// source can read file bytes straight into the frame (AppendBlockHeader). Encoders
// write 92, then piece and offset in their shortest form. Data is at most 512 KiB.
//
//	0f 0000000a 92 03 cd4000 68656c6c6f   block: piece 3, offset 16384, data "hello"
//
// # Versions
//
// The Hello carries the range of versions the dialler speaks, [v0, v1]. The listener
// picks v = min(v1, its highest); if v is below max(v0, its lowest) there is no common
// version and it answers Error{c: 2 unsupported version} and closes. Otherwise it
// answers Welcome{v}. The dialler checks that v is in its own range (else it closes
// with the same status). Both sides then send only the message types, keys and
// values version v defines. See NegotiateVersion.
//
// # Status codes
//
// Status codes travel in Error and QueryDone. They are separate from Go errors:
// AsError turns a received code into a *RemoteError that matches the sentinel below
// with errors.Is, and StatusOf picks the code for a local error. A code this version
// does not define matches no sentinel, and is passed on unchanged when relayed.
//
//	code  name                 sentinel               meaning
//	0     ok                   -                      success (QueryDone only)
//	1     bad request          ErrBadRequest          malformed, invalid or unexpected message
//	2     unsupported version  ErrUnsupportedVersion  no common protocol version
//	3     not found            ErrNotFound            unknown content, peer or query
//	4     overloaded           ErrOverloaded          try another node
//	5     timeout              ErrTimeout             part of the overlay did not answer in time
//	6     forbidden            ErrForbidden           not allowed for this peer or role
//	7     internal             ErrInternal            the sender failed
//	8     unavailable          ErrUnavailable         e.g. the file changed or is being rehashed
//
// A frame refused by the bounds (ErrMalformed, ErrFrameTooLarge, ErrUnknownType) maps
// to 1.
//
// # Identity
//
// Every node, supernode or peer, has an ed25519 key pair. Its peer ID is the SHA-256
// of the 32-byte public key. A peer ID is printed as 52 characters of lowercase
// unpadded base32 (RFC 4648 alphabet; the last character's four spare bits are zero,
// so every ID has exactly one spelling); a content ID as 64 lowercase hex digits. A
// node keeps its key in identity.key in its data directory: PEM "PRIVATE KEY", PKCS #8,
// mode 0600; a key file that group or others can read is refused rather than used.
//
// The TLS certificate of a node is a self-signed X.509 certificate of that key. A
// receiver of a certificate accepts exactly one certificate, whose public key is
// ed25519 and whose signature verifies under that same key; the peer ID is the
// SHA-256 of the key. Names, dates and extensions are ignored and there are no
// certificate authorities: the key is the identity, and the TLS 1.3 handshake
// (CertificateVerify) proves the sender holds it. The listener requires a client
// certificate, so both ends of every connection know each other's peer ID.
//
// A dialler that knows which peer it wants (from a "peerid@host:port" address or from
// a hit's source) pins it: the handshake fails with ErrPeerIDMismatch unless the
// listener's key hashes to that ID, so a peer ID cannot be impersonated. A dialler
// with no expectation (a bootstrap address) accepts any valid key and learns the ID.
// See ServerTLS, ClientTLS and RemotePeerID.
//
// # Publishing
//
// A leaf sends its whole share as Publish frames after its Welcome: the first with
// r set, the rest without, each of at most 512 files. Later additions are plain
// Publish frames and removals Unpublish frames. A supernode answers a leaf that
// publishes more files than it keeps for one leaf with Error{c: 4}, and Publish or
// Unpublish from anything but its own leaf with Error{c: 6}.
//
// # Queries
//
// A leaf sends Query with an ID of its choosing (unique among its own queries), the
// keywords or a content ID, a hop limit (0: the supernode's default) and optionally a
// hit limit. Everything that comes back for the query carries that ID.
//
// A supernode that receives a query from a leaf gives it a fresh random ID for the
// overlay, so leaves can neither collide nor replay IDs, and maps it back on the way
// out. It then, as does a supernode receiving a query from a neighbour:
//
//   - answers from its own index with Hits frames on the link the query came from;
//   - if the hop limit is above 0, forwards Query (same ID, hop limit one less) to each
//     neighbour supernode other than the one it came from whose summary may match
//     (see Summaries) or that has not sent a summary yet;
//   - relays the Hits it receives for the query back towards where the query came
//     from (the reverse path), up to the hit limit;
//   - once every neighbour it forwarded to has sent QueryDone, or after a timeout
//     (5 s by default; status 5 then), sends exactly one QueryDone on the link the query
//     came from, with n = 1 (itself) plus the n of the QueryDone frames it received.
//
// A supernode remembers query IDs for a while (60 s by default). A query with an ID it
// has seen is a duplicate, arriving by a second path: it is answered at once with a
// QueryDone with n = 0 and neither searched nor forwarded. So every link a query
// crosses carries exactly one QueryDone back, and the leaf's QueryDone counts the
// supernodes that searched.
//
// # Summaries
//
// Supernodes tell their neighbours what can be found through them with an attenuated
// Bloom filter of depth d (the sender's hop limit). For the summary a supernode S sends
// to neighbour X, level 0 holds the keys of S's own leaves' files, and level k the union
// of level k-1 of the summaries S received from its other neighbours (never X's own):
// what is reachable through S within k more supernode hops. X forwards a query with h
// hops left to S only if some level k < h may contain every key of the query.
//
// Each level travels in its own Summary frame {l: k, d: depth, f: filter}; a sender
// sends the levels that changed, when they change. A receiver keeps at most its own
// hop limit of levels.
//
// The keys of a file are the 32 bytes of its content ID and the UTF-8 bytes of each
// search term of its name and tags, as index.Tokenize makes them (Unicode NFKD without
// combining marks, lowercased, split on everything that is not a letter or a digit).
// A query's keys are its content ID if it has one, else the terms of its text.
//
// The filter f (index.Bloom.MarshalBinary) is one byte 1 (the format version), one
// byte log2(m) for a filter of m bits (10 to 23), one byte K = 7, then m/64 uint64
// words, little-endian; bit x is bit x%64 of word x/64. A key with XXH64 hash h (seed
// 0) sets the bits (h + i*(rotl64(h, 32) | 1)) mod m for i = 0..6. Filters of different
// sizes are combined by folding the larger (OR-ing its halves) to the smaller. The
// frame limit caps a filter in practice at 2^22 bits (512 KiB).
//
// # One-hop summaries
//
// From v8 every supernode keeps the one-hop summary of every other live supernode:
// one Bloom filter (the format of Summaries) of the keys of its own leaves' files,
// sized for its key count at about 1% false positives. A version may keep the bits
// of keys that left for a few minutes (five in this implementation), so most diffs
// only set bits; a receiver asks such a supernode a query it cannot answer, nothing
// worse. Its origin issues a new
// version when its index changed, at most every few seconds, and signs it: ed25519
// over "supernet one-hop summary v1\x00", the origin's peer ID, the incarnation and
// the version as big-endian uint64s, and the SHA-256 of the filter's encoding. The
// key is the one in the origin's member entry (see Members); a receiver takes
// updates only of live members.
//
// An update travels to every supernode over the links between neighbours: the
// origin sends it to all its neighbours, and a receiver that takes a version
// newer than its own passes it on to a few of its other neighbours (three in this
// implementation), batched in one summaries frame per link and second. A version whose
// diff applies to the version held, or that carries the whole filter, and whose
// signature checks, is taken; an older or equal one is dropped. A diff whose base
// is newer than the version held, or an announcement of a newer version, may be
// held for a few seconds (three here) while the missing version comes by another
// path; a diff that still does not apply, or does not check, is answered with a
// summary_want for the origin, and the neighbour sends its current version: from
// v9, when the want names a version held (h) and the neighbour still has every
// diff since, as one diff from it (this implementation keeps the last four, up to
// 16 KiB); else the whole filter. Diffs flip bits, so the neighbour flips its kept
// diffs back to get the filter at the version held; the signature covers the whole
// filter, so it holds for that diff too. A direct query may travel right behind the hello of the link
// opened for it, before the welcome. A supernode sends a new neighbour announcements of every version
// it holds, and the neighbour wants those it lacks; the same announcements go to
// one neighbour every few ticks, so a version missed for any reason is repaired.
//
// A supernode answers a query from a leaf from its own index, then picks the
// supernodes whose summaries hold every key of the query and sends each, in small
// rounds (the nearest and least loaded first), the query with o: true and h: 0. It
// stops once the hit limit, or enough sources of every file found, is reached, or
// every candidate has answered or timed out. A supernode answers a direct query
// from its own index alone, with its hits in the QueryDone where they fit. A query
// whose keys no summary holds costs nothing beyond the leaf's own supernode.
//
// # Keyword ring
//
// From v10 the keys of every supernode's index are also kept on the ring of
// supernode IDs (the ring of the username directory). A key is the XXH64 hash
// (seed 0) of a search term (see Summaries), or of a content ID's 32 bytes. Key k sits at the position
// whose first 8 bytes are k, big-endian, and the rest zero. The first three
// live supernodes at or after that position (ring.Copies) keep it: its keepers.
//
// Term messages name a supernode by its ID prefix: the first 8 bytes of its
// peer ID, big-endian, as a uint64 (IDPrefix), which the member list resolves
// to the supernode. A batch is mostly the names of its keeper and publisher,
// and most carry a key or two; a prefix takes at most 9 bytes on the wire, a
// peer ID 34. A prefix is never 0 in these messages: a batch whose t or p is 0
// (no keeper or no publisher), and a holder list that names 0, are refused.
//
// A supernode (the publisher) sends each keeper what changed in its keys: a
// batch with the keys added (a) and removed (d), its incarnation (i), the
// keeper (t) and its own prefix (p). Batches travel in term_puts frames, hop by
// hop over supernode links toward t. Each hop lowers h, which starts at 32 or
// less. A keeper that sees a later incarnation of a publisher drops what the
// earlier one put. Adding a key a keeper holds changes nothing, so a publisher
// may send its keys again at any time, as it does every 30 minutes.
//
// The supernode of a query sends term_lookup straight to a keeper of its keys:
// the query's ID and 1 to 64 keys. The keeper answers term_holders, with a
// list for each key: the ID prefixes of the supernodes that hold it, at most
// 256. When it holds more, it names a random sample of 256 and sets m.
//
// # Transfers
//
// A downloader dials a source found in a hit with Hello{r: 3}, pinning the source's
// peer ID, and is welcomed with r: 3. For each file it opens a transfer stream and
// sends GetMeta. The source answers with Meta, or with Error (3 not found) and closes
// the stream. The downloader checks that the metadata hashes to the content ID it
// asked for (SHA-256 of "supernet content v1\n", the size and piece size as big-endian
// uint64s, and the piece hashes; see package content) and drops a source that lies.
//
// It then sends Request frames, as many ahead as it likes. The source answers each
// with one Block of exactly the requested range, in request order, or with an Error
// (1 for a range outside the file, 8 when it cannot read it) and closes the stream.
// The downloader checks each piece's SHA-256 before it uses it.
//
// # Swarms
//
// Peers that want or have the same file form a swarm, and exchange pieces both ways,
// BitTorrent-style, over one swarm stream per pair of peers (v3). The supernodes are the
// swarm's tracker: a query for the content ID lists the peers that published it, and a
// downloader publishes the file as soon as it has one verified piece.
//
// The joiner opens a stream and sends join{i: content ID}. The other side answers with
// meta for the file (checked by the joiner as under Transfers), or with error (3: it has
// no piece of it; 4: the swarm is full; 6: the joiner is banned from it after sending bad
// data) and closes the stream. Then each side sends its bitfield, before anything else,
// and from then on, in any order:
//
//   - have when it verifies a piece, to every peer of the swarm (also those that have it);
//   - interested when the other side has a piece it wants and may ask for, not_interested
//     when that stops being so;
//   - unchoke when it will answer the other side's requests, choke when it stops; a choke
//     drops every request not yet answered, and a peer that is choking ignores requests
//     that arrive (they crossed the choke);
//   - request for blocks of pieces the other side has: 16 KiB at offsets that are
//     multiples of 16 KiB (the last block of a piece may be shorter), as many ahead as
//     it likes, up to 1024 waiting; the other side answers each with a block, in
//     request order, while it does not choke;
//   - cancel for a request it no longer needs (another peer sent the block first);
//   - reject for a request it will not answer; the receiver frees the block and no
//     longer counts the piece among the sender's until a have announces it again;
//   - peers to tell of other peers in the swarm (peer exchange); a receiver may join
//     them like peers the tracker named, but sets up the connection through the
//     supernode each entry names (see Connection setup) and never dials the
//     addresses in an entry, so a peer cannot point a swarm at a host of its choice;
//     entries without sn are ignored.
//
// A request for a piece the sender did not announce or of more than 16 KiB, a block
// that is not one such block of a piece, a have-map of the wrong length, a second
// have-map, or anything before the have-map, is a protocol error:
// the receiver answers error{c: 1} and closes the stream. Data is only sent from
// pieces the sender has verified, and the receiver checks every piece against its hash
// before it announces it; a peer that sent a piece that fails is dropped and refused in
// that swarm from then on.
//
// Two peers that join each other at once keep the stream opened by the peer whose ID is
// smaller (bytewise); a second stream from the same peer in the same direction replaces
// the first.
//
// A first source (the peer that shares the file from its folder) may send an empty
// bitfield and announce pieces one at a time with have, each to one peer, so that it
// sends every piece once before it sends any twice. A peer whose announcement was
// passed to another (it did not ask for the piece in time, or was choked first) may
// still ask for it; the first source then rejects the request if another peer holds
// the piece or is fetching it from the first source. Peers treat it like any other.
//
// # Membership
//
// Every supernode issues its own member entry (v4) with a beat higher than any
// before (its clock in milliseconds serves), signed over
// "supernet member record v1" 0x00, then k, each address, b, l and c: byte strings
// with a 2-byte big-endian length before them, the address count as one byte, b as
// 8 bytes and l and c as 4 bytes, big-endian; an entry with an incarnation (v7)
// is signed over "supernet member record v2" 0x00 and the same fields, then in
// as 8 bytes. A receiver keeps an entry only if it is later than the one it
// holds (a higher incarnation, or the same and a higher beat) and the signature
// checks. From v7 a receiver keeps only entries whose chain admits them as
// supernodes (see Admission), and a leaf trusts nothing else in a member list.
//
// Up to v8 a supernode issued its entry every round and sent every neighbour
// the freshest entry it held of every live supernode; an entry whose beat had
// not risen for a few seconds was taken as dead.
//
// From v9 a supernode issues its entry when it starts, when the entry's
// addresses, capacity or chain change, when it hears a report of itself gone,
// and every refresh interval (30 minutes by default). Every gossip round (a
// second) it sends each supernode neighbour one members message with what was
// news to it since the last round, each item except to the neighbour it came
// from, or an empty one: entries that were later than those held, in m, and
// gone reports it took, in g. A neighbour gets every live entry, in as many
// messages as it takes, when the link opens.
//
// From v11 an entry issued only because the refresh interval passed goes down
// a spanning tree of the ring of supernode IDs, in member_tree, rather than
// over every link: flooded, each supernode would get every refresh from each
// of its neighbours. Its issuer sends it to each v11 neighbour with the arc of
// the ring from that neighbour (going round) to the next such neighbour, the
// last one's arc ending at the issuer; positions are ID prefixes. A receiver
// that held an earlier entry does the same over its own arc, to its neighbours
// on it. Since every supernode links its successor on the ring, the arcs cover
// every supernode once. A supernode that cannot cover its arc (a live
// supernode it lists lies between it and its first neighbour on the arc, or a
// neighbour speaks v10 or older) passes the entry on as news in members
// instead, which floods from there.
//
//	gone (MemberGone): a report of a supernode gone, v9
//	  p    bin 32   the supernode gone
//	  in?  uint64   the incarnation of its entry the reporter held
//	  b    uint64   the beat of that entry
//	  y    bin 32   the reporter, a live supernode
//	  s    bin 64   the reporter's ed25519 signature over "supernet member gone v1"
//	                0x00, then p, in and b as 8 bytes big-endian, and y
//
// A supernode reports a neighbour gone when it heard nothing from it for the
// member timeout (4 s by default), linked or not. A receiver takes a report
// only from a reporter it holds as live, whose signature checks, and of an entry
// at least as late as the one it holds, which is not suspected yet; it then
// suspects that supernode and passes the report on. A supernode takes about 32
// reports from one reporter, then one every 15 s. A supernode that hears a
// report of itself issues a later entry, which ends the suspicion everywhere;
// one that hears from a neighbour it suspects sends it the report. A supernode
// still suspected after three member timeouts (12 s) is taken as dead, as is an
// entry not issued again for two refresh intervals, in case its report was lost.
// A dead entry is remembered with its beat for two such lifetimes, so that older
// copies do not revive it.
//
// # Username directory
//
// A username record (v5) is signed by its owner over "supernet user record v1" 0x00,
// then u, k, q, e, each of sn, each of a and nt: u, k and each address with a 2-byte
// big-endian length before it, q and e as 8 bytes big-endian, the counts of sn and a
// as one byte each, and nt as one byte. The records live on the supernodes: each
// supernode sits on a ring of 2^256 positions at its peer ID, a name at
// SHA-256("supernet user" 0x00 name), and the first three live supernodes at or
// after a name's position (going round) hold its record: the owner and its two
// successors. A supernode that gets user_put or user_get from a leaf, or from a
// supernode, answers it if it holds the name (a get) or owns it (a put); else it
// passes the request to the linked supernode closest before the owner, or to the
// owner itself when linked, raising h, and sends the reply back the way the request
// came. A replica asked for a record it lacks (a copy may not have reached it yet)
// asks the next replica, with d one higher and a new request ID, and the last
// answers not found. The owner stores a put only if the record is signed by the key that holds
// the name, or the name is free (no record, or the held one expired), and its q is
// higher; it then sends user_store to the other replicas it is linked to, and each
// replica that takes a new record does the same. When the member list changes, and
// every few seconds besides, a supernode sends user_store with each record it holds
// to the other replicas, and hands each record it should no longer hold to the
// owner with user_put, dropping it once the owner has answered. A leaf puts its record
// again before it expires and whenever its supernodes or addresses change, and when a
// supernode that should hold it restarts (its member entry's in rises, or it leaves the
// list and comes back).
//
// A supernode keeps the records it holds on disk, written before it answers a put, so
// they outlive a restart. An owner that holds no live record of a name asks the other
// replicas before a key may claim it: it sends user_get with d 1 toward the second
// replica (which passes it to the third if it lacks the record). If a replica answers
// with a record, the owner stores that one first and decides the put against it; if
// the answer is not found, the claim is decided as one of a free name; any other answer
// makes the owner answer the put unavailable (c 8), and the leaf asks again. An owner that knows no other supernode answers a claim unavailable
// while it should be on a ring (it was before a restart, or it joins others) and has
// not seen one, for at most a minute. A put it cannot write to disk is answered
// unavailable too, and changes nothing.
//
// A peer hands a file to another (v5) on a transfer connection: it opens a stream
// with deliver and writes the bytes after it. The receiver, if it takes deliveries
// from the sender's peer ID, stores them and answers delivered once all s bytes have
// arrived and their SHA-256 is h; otherwise it answers error (forbidden, too large,
// no space, or a hash mismatch) and resets the stream.
//
// # Election
//
// A leaf (v6) sends candidacy to each of its supernodes when it attaches and
// whenever its answer changes. A supernode whose leaves exceed its leaf limit picks,
// from the leaves that claim e and whose reachability its own dial-back confirmed
// (nat_status p), the one up longest, and sends it promote. The leaf starts a
// supernode in its own process, on a new identity and port, that joins the overlay
// through the supernode that promoted it, and answers promoted. The promoting
// supernode dials the new one at the address given: only a supernode it reaches
// gets leaves. It then sends redirect, naming the new supernode, to half of its
// other leaves; each drops the link to the sender and attaches to the target. A
// promoted supernode that keeps fewer leaves than it should for a while (its own
// setting) sends redirect to each of its leaves, naming a live supernode with room
// for them, and stops.
//
// # Admission
//
// An overlay is defined by its network key, an ed25519 key pair its operator
// keeps. Any key may attach as a leaf, but the supernode and relay roles are
// held only by keys the network admits (v7). A certificate (cert) admits one key
// to a set of roles until an expiry; it is signed over "supernet admission v1"
// 0x00, the 32-byte network key, k with a 2-byte big-endian length before it, r
// as one byte and e as 8 bytes big-endian. A chain is a list of certificates:
// the first signed by the network key, each later one by the key of the one
// before it. A chain admits peer P to roles R at time t when it has 1 to 4
// certificates, every signature checks, every issuer after the network key holds
// role 4 (admit), every certificate grants only roles its issuer holds and
// expires no later than its issuer's, none expired before t (a receiver allows
// two minutes of clock skew), and the last names P and holds R.
//
// The operator admits a supernode with a one-certificate chain. A supernode with
// role 4 that promotes a leaf (see Election) extends its own chain with a
// certificate for the key of the supernode the leaf starts, short-lived, and
// sends it with certificate; it sends a new one before the old expires for as
// long as the leaf stays attached and the promoted supernode stays live.
//
// Where chains are checked:
//
//   - A hello with r 2 (supernode) must carry a chain admitting the dialler's peer
//     ID (proven by TLS) as a supernode; otherwise the listener answers
//     error{c: 6} and closes. A supernode's welcome carries the network key and
//     its own chain, which the dialler checks the same way, leaf or supernode.
//   - A hello with r 5 (relay) must carry a chain holding role 2, or rp: the
//     HMAC-SHA256, keyed with the secret relays and supernodes share, of
//     "supernet relay proof v1" 0x00 and 32 bytes exported from the TLS session
//     under the label "EXPORTER-supernet-relay-proof" with no context (RFC 8446,
//     section 7.5). The proof is bound to the connection, so it cannot be replayed.
//   - A member entry is kept, passed on or listed to leaves only when its chain
//     admits its key as a supernode; a neighbour that sends one that does not is
//     disconnected. The ring of the username directory is made of these entries,
//     so no key without a chain owns a ring position.
//   - A supernode closes a link to a neighbour whose chain has expired and for
//     which it holds no entry with a newer one.
//
// A leaf configured with the network key checks every welcome and member entry
// against it; one without takes the key from the welcome of the first supernode
// it attaches to and keeps it (trust on first use).
//
// # Connection setup
//
// Peers behind NATs connect through their supernodes (v2). The initiator sends
// signal{k: 1, t: target, ts: the target's supernode from the hit's source} to its
// supernode, which replaces f, fs, nt and a with what it established itself and
// forwards it: to its leaf t, to the neighbour ts, or else to all neighbours while h
// lasts, dropping duplicates of (i, k, f). With ts all zeros (the initiator knows
// only the peer ID) the request is flooded, and a supernode at the flood's edge drops
// it silently rather than failing it, since another branch may find the target; the
// initiator then gives up on its own timeout. The target's supernode picks the plan from
// both NAT types: direct when the target is reachable (public, or on a relay), reverse
// when the initiator is, punch when both map endpoint-independently, relay otherwise.
// It sends the target an offer (with relay credentials minted for it when the plan is
// punch or relay) and the initiator an answer, which travels back like a request.
// With punch, both sides send STUN Binding requests to each other's candidates from
// their QUIC socket at the same moment; the initiator dials the first candidate that
// answers. With relay, or when a punch has not worked in time, the target allocates a
// TURN relay and sends signal{k: 4, a: [relayed address]}; the initiator dials that
// address, and QUIC, with the same identity pinning, runs end to end through it.
//
// # Address proofs
//
// A leaf attaches over one IP family, so its supernode sees one address. Its
// address in the other family must be seen too, not claimed, or a leaf could send
// downloaders at any host. The welcome's du lists the supernode's addresses; the
// leaf sends a STUN Binding request with USERNAME = its peer ID to one of the other
// family, from its QUIC socket. The answer carries, besides XOR-MAPPED-ADDRESS, a
// 16-byte token in attribute 0xC0A1: HMAC-SHA256 of the username, the mapped address
// and the current minute under a secret of the supernode, cut to 16 bytes. The leaf
// puts {a: mapped address, t: token} in its nat_report, and the supernode takes the
// address, only in the family it did not see and not in a private range, when the
// token is right for the link's peer ID within the last two minutes. A host that
// does not receive at an address never learns its token. A target and an
// initiator that both have a proven or observed IPv6 address punch even when their
// IPv4 NATs would need a relay: an IPv6 firewall keeps the address and port, as an
// endpoint-independent NAT does.
//
// Relay credentials follow the TURN REST form: the username is "<expiry>:<peer ID>"
// and the password base64(HMAC-SHA1(secret, username)), with a secret the supernodes
// and relays share, so a stock TURN server with that secret serves as well.
//
// # Version history
//
//	v1  The first version: message types 0x01 to 0x0f as above, ALPN "supernet/1".
//	v2  NAT reports, connection signalling and relays: types 0x10 to 0x15; optional
//	    keys sn (supernode, bin 32) and nt (NAT type) in a hit's sources, and sa
//	    (a second STUN address of the listener, str) in welcome.
//	v3  Swarms: types 0x16 to 0x1f, and swarm streams on transfer connections. A v3
//	    peer still answers get_meta streams from v1 and v2 peers.
//	v4  Membership: type 0x20.
//	v5  Username directory and deliveries: types 0x21 to 0x26.
//	v6  Election: types 0x27 to 0x2a.
//	v7  Admission: type 0x2b; optional keys ch and rp in hello, nw and ch in
//	    welcome, in and ch in member entries.
//	v8  One-hop summaries: types 0x2c and 0x2d; optional keys o in hello and
//	    query, h in query_done.
//	v9  Membership by changes: optional key g (gone reports) in members;
//	    entries issued on change and refresh, not every round. Supernodes of
//	    v8 and older take a v9 supernode's entry as dead after their member
//	    timeout, so an overlay's supernodes upgrade together. Optional key n
//	    in members: a leaf's list of a larger overlay is a sample of 16.
//	v10 Keyword ring: types 0x2e to 0x30.
//	v11 Member refreshes down a spanning tree of the ring, and digests of the
//	    member list for a new neighbour: types 0x31 to 0x33. A
//	    leaf's sample of a larger overlay (members with n) leaves out the
//	    entries' chains.
//	v12 Address proofs: optional keys du in welcome, pf in nat_report, pv in
//	    nat_status, and the token attribute in STUN answers to requests with
//	    a USERNAME. IPv6 relaying: optional key 6 in relay_load (the relay's
//	    IPv6 address) and in relay credentials (allocate an IPv6 relayed
//	    address, with REQUESTED-ADDRESS-FAMILY); plan 5, relay-reverse, whose
//	    answer carries the initiator's relay credentials. Optional key rl in hello.
//
// A later version adds message types at the end of the list and optional keys to
// existing messages; anything else (a new meaning for a key or a type, a new
// required key, a change to the framing or the bounds) needs a new ALPN protocol.
package protocol
