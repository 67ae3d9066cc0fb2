package protocol

import (
	"bytes"
	"io"
	"reflect"
	"testing"
)

// golden is one message with the exact frame a v1 encoder produces for it. The hex
// was generated once by AppendFrame and then read by hand against the msgpack spec;
// a change here is a wire change and needs a version bump (see doc.go).
type golden struct {
	name string
	msg  Message
	hex  string
}

var goldens = []golden{
	{"hello", &Hello{MinVersion: 1, MaxVersion: 1, Role: RoleLeaf, Name: "alice",
		Addrs: []string{"192.0.2.1:4000"}, Agent: "supernet/0.1"}, `0100000036
		86a2763001a2763101a17201a16ea5616c696365a16191ae3139322e302e322e
		313a34303030a26167ac73757065726e65742f302e31`},
	{"hello_minimal", &Hello{MinVersion: 1, MaxVersion: 3, Role: RoleSupernode}, `010000000c
		83a2763001a2763103a17202`},
	{"welcome", &Welcome{Version: 1, Role: RoleLeaf, Observed: "198.51.100.7:51000",
		Addrs: []string{"203.0.113.5:4000"}, Agent: "supernet/0.1"}, `0200000040
		85a17601a17201a16fb23139382e35312e3130302e373a3531303030a16191b0
		3230332e302e3131332e353a34303030a26167ac73757065726e65742f302e31`},
	{"error", &Error{Code: StatusNotFound, Message: "no such file", Ref: exQID}, `0300000027
		83a16303a16dac6e6f20737563682066696c65a171c410010203040506070809
		0a0b0c0d0e0f10`},
	{"error_minimal", &Error{Code: StatusOverloaded}, `0300000004
		81a16304`},
	{"ping", &Ping{Seq: 7}, `0400000004
		81a17307`},
	{"pong", &Pong{Seq: 1 << 40}, `050000000c
		81a173cf0000010000000000`},
	{"pong_paced", &Pong{Seq: 3, Every: 5000}, `0500000009
		82a17303a165cd1388`},
	{"publish", &Publish{Reset: true, Files: []FileRecord{{ID: exCID, Name: "hey jude.mp3", Size: 4000000,
		Tags: Tags{Title: "Hey Jude", Artist: "The Beatles", Year: 1968}}}}, `0600000063
		82a172c3a1669184a169c4201111111111111111111111111111111111111111
		111111111111111111111111a16eac686579206a7564652e6d7033a173ce003d
		0900a17483a174a8486579204a756465a161ab54686520426561746c6573a179
		cd07b0`},
	{"publish_untagged", &Publish{Files: []FileRecord{{ID: exCID2, Name: "a.txt", Size: 0}}}, `0600000034
		81a1669183a169c4202222222222222222222222222222222222222222222222
		222222222222222222a16ea5612e747874a17300`},
	{"unpublish", &Unpublish{IDs: []ContentID{exCID, exCID2}}, `0700000048
		81a16992c4201111111111111111111111111111111111111111111111111111
		111111111111c420222222222222222222222222222222222222222222222222
		2222222222222222`},
	{"query", &Query{ID: exQID, Text: "hey jude", Hops: 4, Limit: 100}, `0800000026
		84a171c4100102030405060708090a0b0c0d0e0f10a174a8686579206a756465
		a16804a16c64`},
	{"query_cid", &Query{ID: exQID, CID: exCID, Hops: 0}, `080000003c
		83a171c4100102030405060708090a0b0c0d0e0f10a163c42011111111111111
		11111111111111111111111111111111111111111111111111a16800`},
	{"hits", &Hits{ID: exQID, Hits: []Hit{{
		FileRecord: FileRecord{ID: exCID, Name: "hey jude.mp3", Size: 4000000, Tags: Tags{Artist: "The Beatles"}},
		Sources:    []Source{{Peer: exPeer, Name: "alice", Addrs: []string{"192.0.2.1:4000"}}},
		Score:      1.5,
	}}}, `09000000b0
		82a171c4100102030405060708090a0b0c0d0e0f10a1689186a169c420111111
		1111111111111111111111111111111111111111111111111111111111a16eac
		686579206a7564652e6d7033a173ce003d0900a17481a161ab54686520426561
		746c6573a37372639183a170c420333333333333333333333333333333333333
		3333333333333333333333333333a16ea5616c696365a16191ae3139322e302e
		322e313a34303030a27363ca3fc00000`},
	{"query_done", &QueryDone{ID: exQID, Supernodes: 3}, `0a00000018
		82a171c4100102030405060708090a0b0c0d0e0f10a16e03`},
	{"query_done_timeout", &QueryDone{ID: exQID, Status: StatusTimeout, Supernodes: 300}, `0a0000001d
		83a171c4100102030405060708090a0b0c0d0e0f10a17305a16ecd012c`},
	{"summary", &Summary{Level: 1, Depth: 3, Filter: []byte{0x01, 0x80, 0x00, 0xff}}, `0b0000000f
		83a16c01a16403a166c404018000ff`},
	{"get_meta", &GetMeta{ID: exCID}, `0c00000025
		81a169c420111111111111111111111111111111111111111111111111111111
		1111111111`},
	{"meta", &Meta{ID: exCID, Name: "hey jude.mp3", Size: 300000, PieceSize: 262144,
		Hashes: append(bytes.Repeat([]byte{0xaa}, 32), bytes.Repeat([]byte{0xbb}, 32)...)}, `0d00000087
		85a169c420111111111111111111111111111111111111111111111111111111
		1111111111a16eac686579206a7564652e6d7033a173ce000493e0a27073ce00
		040000a168c440aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
		aaaaaaaaaaaaaabbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb
		bbbbbbbbbbbbbb`},
	{"request", &Request{Piece: 3, Offset: 16384, Length: 16384}, `0e0000000e
		83a17003a16fcd4000a16ecd4000`},
	{"request_first_byte", &Request{Piece: 0, Length: 1}, `0e00000007
		82a17000a16e01`},
	{"block", &Block{Piece: 3, Offset: 16384, Data: []byte("hello")}, `0f0000000a
		9203cd400068656c6c6f`},
	{"block_big_piece", &Block{Piece: 70000, Offset: 0, Data: []byte{}}, `0f00000007
		92ce0001117000`},
	{"nat_report", &NATReport{Mapping: NATEndpointIndependent, Reflexive: []string{"203.0.113.9:4000"}}, `1000000018
		82a16d02a17291b03230332e302e3131332e393a34303030`},
	{"nat_status", &NATStatus{NAT: NATNone, Public: true, Observed: "203.0.113.9:4000"}, `110000001a
		83a16e01a170c3a16fb03230332e302e3131332e393a34303030`},
	{"signal", &Signal{ID: 42, Kind: SignalAnswer, From: exPeer, FromSN: exPeer, To: exPeer, ToSN: exPeer, Hops: 2,
		NAT: NATEndpointIndependent, Addrs: []string{"203.0.113.9:4000"}, Plan: PlanPunch, Delay: 30,
		Relay: &RelayCreds{UDP: "203.0.113.1:3478", TCP: "203.0.113.1:3478", Username: "1800000000:x",
			Password: "pw", Expires: 1800000000}}, `12000000ff
		8ca1692aa16b03a166c420333333333333333333333333333333333333333333
		3333333333333333333333a26673c42033333333333333333333333333333333
		33333333333333333333333333333333a174c420333333333333333333333333
		3333333333333333333333333333333333333333a27473c42033333333333333
		33333333333333333333333333333333333333333333333333a16802a26e7402
		a16191b03230332e302e3131332e393a34303030a2706c03a1641ea17285a175
		b03230332e302e3131332e313a33343738a174b03230332e302e3131332e313a
		33343738a16eac313830303030303030303a78a170a27077a165ce6b49d200`},
	{"relay_load", &RelayLoad{UDP: "203.0.113.1:3478", Allocations: 3, Capacity: 1000, Rate: 1.5e6}, `1300000027
		84a175b03230332e302e3131332e313a33343738a16103a163cd03e8a172cb41
		36e36000000000`},
	{"relay_ask", &RelayAsk{}, `1400000001
		80`},
	{"relay_ok", &RelayOK{Relay: RelayCreds{UDP: "203.0.113.1:3478", Username: "u", Password: "p", Expires: 5},
		Observed: "198.51.100.2:5"}, `1500000033
		82a17284a175b03230332e302e3131332e313a33343738a16ea175a170a170a1
		6505a16fae3139382e35312e3130302e323a35`},
	{"join", &Join{ID: exCID}, `1600000025
		81a169c4201111111111111111111111111111111111111111111111111111111111111111`},
	{"join_from", &Join{ID: exCID, SN: &exSN, NAT: NATEndpointIndependent}, `160000004e
		83a169c4201111111111111111111111111111111111111111111111111111111111111111
		a2736ec4202222222222222222222222222222222222222222222222222222222222222222
		a26e7402`},
	{"peers", &Peers{Peers: []Source{{Peer: exPeer, Addrs: []string{"192.0.2.9:6346"}, SN: &exSN, NAT: NATNone}}}, `1e00000064
		81a1709184a170c4203333333333333333333333333333333333333333333333333333333333333333
		a16191ae3139322e302e322e393a36333436
		a2736ec4202222222222222222222222222222222222222222222222222222222222222222a26e7401`},
	{"bitfield", &Bitfield{Bits: []byte{0xff, 0x80}}, `1700000007
		81a162c402ff80`},
	{"have", &Have{Piece: 300}, `1800000006
		81a170cd012c`},
	{"interested", &Interest{}, `1900000001
		80`},
	{"not_interested", &NoInterest{}, `1a00000001
		80`},
	{"choke", &Choke{}, `1b00000001
		80`},
	{"unchoke", &Unchoke{}, `1c00000001
		80`},
	{"cancel", &Cancel{Piece: 3, Offset: 16384, Length: 16384}, `1d0000000e
		83a17003a16fcd4000a16ecd4000`},
	{"reject", &Reject{Piece: 3, Offset: 16384, Length: 16384}, `1f0000000e
		83a17003a16fcd4000a16ecd4000`},
	{"members", &Members{Members: []MemberRecord{{Key: bytes.Repeat([]byte{0x11}, 32), Addrs: []string{"192.0.2.1:4000"},
		Beat: 7, Leaves: 3, Cap: 200, Sig: bytes.Repeat([]byte{0x22}, 64)}}}, `2000000089
		81a16d9186
		a16bc4201111111111111111111111111111111111111111111111111111111111111111
		a16191ae3139322e302e322e313a34303030
		a16207 a16c03 a163ccc8
		a173c44022222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222`},
	{"user_put", &UserPut{ID: QueryID{1}, Rec: exUser, Hops: 1}, `21000000d1
		83a169c41001000000000000000000000000000000
		a17288a175a5616c696365
		a16bc4201111111111111111111111111111111111111111111111111111111111111111
		a17102
		a165ce6553f100
		a2736e91c4203300000000000000000000000000000000000000000000000000000000000000
		a16191ae3139322e302e322e313a34303030
		a26e7402
		a173c44022222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222
		a16801`},
	{"user_get", &UserGet{ID: QueryID{2}, Name: "alice", Hops: 2}, `2200000020
		83a169c41002000000000000000000000000000000 a175a5616c696365 a16802`},
	{"user_reply", &UserReply{ID: QueryID{2}, Rec: &exUser, Hops: 3}, `23000000d1
		83a169c41002000000000000000000000000000000
		a17288a175a5616c696365
		a16bc4201111111111111111111111111111111111111111111111111111111111111111
		a17102
		a165ce6553f100
		a2736e91c4203300000000000000000000000000000000000000000000000000000000000000
		a16191ae3139322e302e322e313a34303030
		a26e7402
		a173c44022222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222
		a16803`},
	{"user_reply_refused", &UserReply{ID: QueryID{1}, Code: StatusForbidden, Message: "name taken"}, `2300000025
		83a169c41001000000000000000000000000000000 a16306 a16daa6e616d652074616b656e`},
	{"user_store", &UserStore{Recs: []UserRecord{exUser}}, `24000000bb
		81a1729188a175a5616c696365
		a16bc4201111111111111111111111111111111111111111111111111111111111111111
		a17102
		a165ce6553f100
		a2736e91c4203300000000000000000000000000000000000000000000000000000000000000
		a16191ae3139322e302e322e313a34303030
		a26e7402
		a173c44022222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222`},
	{"deliver", &Deliver{Name: "song.mp3", Size: 5, SHA256: bytes.Repeat([]byte{0x44}, 32), From: "bob"}, `2500000039
		84a16ea8736f6e672e6d7033 a17305
		a168c4204444444444444444444444444444444444444444444444444444444444444444
		a175a3626f62`},
	{"delivered", &Delivered{Name: "song (1).mp3"}, `2600000010
		81a16eac736f6e67202831292e6d7033`},
	{"candidacy", &Candidacy{Eligible: true, Uptime: 3600, Upload: 2 << 20}, `2700000010
		83a165c3 a174cd0e10 a172ce00200000`},
	{"candidacy_not", &Candidacy{Why: "opted out"}, `270000000d
		81a177a96f70746564206f7574`},
	{"promote", &Promote{LeafLimit: 200, GossipMS: 1000, TimeoutMS: 4000}, `280000000f
		83a16cccc8 a167cd03e8 a174cd0fa0`},
	{"promoted", &Promoted{Peer: exLead, Addrs: []string{"192.0.2.7:6346"}}, `2900000037
		82a170c4205555555555555555555555555555555555555555555555555555555555555555
		a16191ae3139322e302e322e373a36333436`},
	{"promoted_with_key", &Promoted{Peer: PeerIDFromPublicKey(bytes.Repeat([]byte{0x77}, 32)), Addrs: []string{"192.0.2.7:6346"},
		Key: bytes.Repeat([]byte{0x77}, 32)}, `290000005b
		83a170c420e29442e61ad354e5cb0831e2e8359e8fb50cf024ad5a8f407c8f9de63bdf7371
		a16191ae3139322e302e322e373a36333436
		a16bc4207777777777777777777777777777777777777777777777777777777777777777`},
	{"promoted_refused", &Promoted{Refused: "opted out"}, `290000000d
		81a177a96f70746564206f7574`},
	{"redirect", &Redirect{Target: exLead.String() + "@192.0.2.7:6346", Why: "promoted"}, `2a00000053
		82a174d943 6b766b766b766b766b766b766b766b766b766b766b766b766b766b766b766b766b766b766b766b766b766b766b766b766b766b71
		403139322e302e322e373a36333436
		a177a870726f6d6f746564`},
	{"certificate", &Certificate{Chain: exChain}, `2b00000077
		81a1639184
		a16bc4201111111111111111111111111111111111111111111111111111111111111111
		a17205 a165ce6b49d200
		a173c44022222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222`},
	{"hello_admitted", &Hello{MinVersion: 1, MaxVersion: 7, Role: RoleSupernode, Chain: exChain}, `0100000083
		84a2763001a2763107a17202
		a263689184
		a16bc4201111111111111111111111111111111111111111111111111111111111111111
		a17205 a165ce6b49d200
		a173c44022222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222`},
	{"hello_relay_proof", &Hello{MinVersion: 7, MaxVersion: 7, Role: RoleRelay, RelayProof: bytes.Repeat([]byte{0x44}, 32)}, `0100000031
		84a2763007a2763107a17205
		a27270c4204444444444444444444444444444444444444444444444444444444444444444`},
	{"welcome_admitted", &Welcome{Version: 7, Role: RoleSupernode, Network: exNet, Chain: exChain}, `02000000a3
		84a17607a17202
		a26e77c4206666666666666666666666666666666666666666666666666666666666666666
		a263689184
		a16bc4201111111111111111111111111111111111111111111111111111111111111111
		a17205 a165ce6b49d200
		a173c44022222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222`},
	{"members_admitted", &Members{Members: []MemberRecord{{Key: bytes.Repeat([]byte{0x11}, 32), Addrs: []string{"192.0.2.1:4000"},
		Beat: 7, Sig: bytes.Repeat([]byte{0x22}, 64), Incarnation: 1800000000123, Chain: exChain}}}, `2000000105
		81a16d9186
		a16bc4201111111111111111111111111111111111111111111111111111111111111111
		a16191ae3139322e302e322e313a34303030
		a16207
		a173c44022222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222
		a2696ecf000001a3185c507b
		a263689184
		a16bc4201111111111111111111111111111111111111111111111111111111111111111
		a17205 a165ce6b49d200
		a173c44022222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222`},
	{"summaries", &Summaries{Updates: []SummaryUpdate{
		{Origin: exSN, Inc: 1800000000123, Ver: 5, Base: 4, Diff: []byte{0x03, 0x10}, Leaves: 12, Sig: bytes.Repeat([]byte{0x44}, 64)},
		{Origin: exLead, Ver: 2}}}, `2c000000af
		81a1759287
		a16fc4202222222222222222222222222222222222222222222222222222222222222222
		a169cf000001a3185c507b a17605 a16204 a164c4020310 a16c0c
		a173c44044444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444
		82a16fc4205555555555555555555555555555555555555555555555555555555555555555 a17602`},
	{"summary_want", &SummaryWant{Origins: PeerList{exSN}}, `2d00000026
		81a16f91c4202222222222222222222222222222222222222222222222222222222222222222`},
	{"summary_want_have", &SummaryWant{Origins: PeerList{exSN}, Have: VersionList{7}}, `2d0000002a
		82a16f91c4202222222222222222222222222222222222222222222222222222222222222222 a1689107`},
	{"query_direct", &Query{ID: exQID, Text: "hey jude", Limit: 100, Direct: true}, `0800000029
		85a171c4100102030405060708090a0b0c0d0e0f10a174a8686579206a756465a16800a16c64 a16fc3`},
	{"query_done_hits", &QueryDone{ID: exQID, Supernodes: 1, Hits: []Hit{{FileRecord: FileRecord{ID: exCID, Name: "a.mp3", Size: 1},
		Sources: []Source{{Peer: exPeer, Addrs: []string{"192.0.2.9:1"}}}}}}, `0a00000084
		83a171c4100102030405060708090a0b0c0d0e0f10a16e01
		a1689184a169c4201111111111111111111111111111111111111111111111111111111111111111a16ea5612e6d7033a17301
		a37372639182a170c4203333333333333333333333333333333333333333333333333333333333333333a16191ab3139322e302e322e393a31`},
	{"members_gone", &Members{Gone: []MemberGone{{Peer: PeerID(bytes.Repeat([]byte{0x33}, 32)), Incarnation: 1800000000123, Beat: 7,
		By: PeerID(bytes.Repeat([]byte{0x44}, 32)), Sig: bytes.Repeat([]byte{0x55}, 64)}}}, `20000000a3
		82a16dc0 a1679185
		a170c4203333333333333333333333333333333333333333333333333333333333333333
		a2696ecf000001a3185c507b
		a16207
		a179c4204444444444444444444444444444444444444444444444444444444444444444
		a173c44055555555555555555555555555555555555555555555555555555555555555555555555555555555555555555555555555555555555555555555555555555555`},
	{"term_puts", &TermPuts{Batches: []TermBatch{
		{To: IDPrefix(exSN), Publisher: IDPrefix(exLead), Inc: 1800000000123, Hops: 3, Add: KeyList{0x0123456789abcdef, 7}, Del: KeyList{42}},
		{To: IDPrefix(exPeer), Publisher: IDPrefix(exLead), Inc: 1800000000123, Hops: MaxTermHops, Del: KeyList{1 << 63}}}}, `2e0000006b
		81a1629286
		a174cf2222222222222222 a170cf5555555555555555
		a169cf000001a3185c507b a16803 a16192cf0123456789abcdef07 a164912a
		85a174cf3333333333333333 a170cf5555555555555555
		a169cf000001a3185c507b a16820 a16491cf8000000000000000`},
	{"term_lookup", &TermLookup{ID: exQID, Keys: KeyList{0x0123456789abcdef, 42}}, `2f00000022
		82a171c4100102030405060708090a0b0c0d0e0f10 a16b92cf0123456789abcdef2a`},
	{"term_holders", &TermHolders{ID: exQID, Lists: []HolderList{
		{Key: 0x0123456789abcdef, Holders: KeyList{IDPrefix(exSN), IDPrefix(exLead)}, More: true},
		{Key: 42}}}, `3000000040
		82a171c4100102030405060708090a0b0c0d0e0f10 a16c92
		83a16bcf0123456789abcdef
		a16892cf2222222222222222 cf5555555555555555
		a16dc3
		81a16b2a`},
	{"member_tree", &MemberTree{Entries: []TreeEntry{{Rec: MemberRecord{Key: bytes.Repeat([]byte{0x11}, 32), Addrs: []string{"192.0.2.1:4000"},
		Beat: 7, Leaves: 3, Cap: 200, Sig: bytes.Repeat([]byte{0x22}, 64)}, Upto: 0x0123456789abcdef}}}, `3100000097
		81a1659182 a17286
		a16bc4201111111111111111111111111111111111111111111111111111111111111111
		a16191ae3139322e302e322e313a34303030
		a16207 a16c03 a163ccc8
		a173c44022222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222
		a175cf0123456789abcdef`},
	{"member_digest", &MemberDigest{Entries: []DigestEntry{{Peer: 0x0123456789abcdef, Incarnation: 1800000000123, Beat: 7}}}, `320000001f
		81a1659183 a170cf0123456789abcdef a2696ecf000001a3185c507b a16207`},
	{"member_want", &MemberWant{Peers: KeyList{0x0123456789abcdef, 42}}, `330000000e
		81a17092cf0123456789abcdef2a`},
}

// TestGoldenEveryType makes sure the table above leaves no message type out.
func TestGoldenEveryType(t *testing.T) {
	seen := map[MsgType]bool{}
	for _, g := range goldens {
		seen[g.msg.Type()] = true
	}
	for _, m := range messageTypes {
		if !seen[m.Type] {
			t.Errorf("no golden encoding for %s", m.Type)
		}
	}
}

func TestGoldenEncode(t *testing.T) {
	for _, g := range goldens {
		t.Run(g.name, func(t *testing.T) {
			want := unhex(t, g.hex)
			got, err := AppendFrame(nil, g.msg)
			if err != nil {
				t.Fatalf("AppendFrame: %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("encoding changed\n got %x\nwant %x", got, want)
			}
			// Appending to a non-empty buffer adds exactly the same bytes.
			prefix := []byte("prefix")
			got2, err := AppendFrame(append([]byte(nil), prefix...), g.msg)
			if err != nil || !bytes.Equal(got2, append(prefix, want...)) {
				t.Fatalf("AppendFrame after a prefix: %x, %v", got2, err)
			}
			var w bytes.Buffer
			if err := WriteMessage(&w, g.msg); err != nil || !bytes.Equal(w.Bytes(), want) {
				t.Fatalf("WriteMessage: %x, %v", w.Bytes(), err)
			}
		})
	}
}

func TestGoldenDecode(t *testing.T) {
	for _, g := range goldens {
		t.Run(g.name, func(t *testing.T) {
			frame := unhex(t, g.hex)
			if MsgType(frame[0]) != g.msg.Type() {
				t.Fatalf("type byte 0x%02x, want %s", frame[0], g.msg.Type())
			}
			got, err := ReadMessage(bytes.NewReader(frame), nil)
			if err != nil {
				t.Fatalf("ReadMessage: %v", err)
			}
			if !reflect.DeepEqual(got, g.msg) {
				t.Fatalf("decoded\n %#v\nwant\n %#v", got, g.msg)
			}
		})
	}
}

// TestRoundTripStream writes every golden message to one stream and reads them back
// in order, reusing one read buffer, as a link does.
func TestRoundTripStream(t *testing.T) {
	var w bytes.Buffer
	for _, g := range goldens {
		if err := WriteMessage(&w, g.msg); err != nil {
			t.Fatalf("%s: %v", g.name, err)
		}
	}
	r := bytes.NewReader(w.Bytes())
	var buf []byte
	for _, g := range goldens {
		ty, body, err := ReadFrame(r, buf)
		if err != nil {
			t.Fatalf("%s: ReadFrame: %v", g.name, err)
		}
		if cap(body) > cap(buf) {
			buf = body[:0]
		}
		m, err := Decode(ty, body)
		if err != nil {
			t.Fatalf("%s: Decode: %v", g.name, err)
		}
		if b, ok := m.(*Block); ok {
			b.Data = bytes.Clone(b.Data) // it aliases buf, which the next frame reuses
		}
		if !sameMessage(m, g.msg) {
			t.Fatalf("%s: got %#v", g.name, m)
		}
	}
	if _, err := ReadMessage(r, buf); err != io.EOF {
		t.Fatalf("after the last frame: %v, want io.EOF", err)
	}
}

// TestRoundTripVariants covers encodings the goldens do not: zero and maximal
// integers, empty and nil slices, every tag, the largest legal sizes.
func TestRoundTripVariants(t *testing.T) {
	maxHashes := bytes.Repeat([]byte{0x5a}, 32*MaxPieceHashes)
	many := make([]ContentID, MaxIDsPerFrame)
	for i := range many {
		many[i][0], many[i][1], many[i][2] = byte(i), byte(i>>8), 1
	}
	tests := []Message{
		&Hello{MinVersion: 1, MaxVersion: 0xffff, Role: RoleTransfer, Addrs: []string{}},
		&Welcome{Version: 0xffff, Role: RoleSupernode},
		&Welcome{Version: 12, Role: RoleSupernode, Dual: []string{"[2001:db8::1]:6346", "192.0.2.1:6346"}},
		&NATReport{Mapping: NATEndpointDependent, Proofs: []AddrProof{{Addr: "[2001:db8:1::2]:4000", Token: [16]byte{1, 2, 3}}}},
		&NATStatus{NAT: NATEndpointDependent, Proven: []string{"[2001:db8:1::2]:4000"}},
		&Error{Code: Status(0xffff)},
		&Ping{}, &Pong{Seq: 1<<64 - 1},
		&Publish{Reset: true},
		&Publish{Files: []FileRecord{{ID: exCID, Name: "x", Size: 1<<63 - 1,
			Tags: Tags{Title: "t", Artist: "a", Album: "l", Genre: "g", Year: -50}}}},
		&Unpublish{IDs: many},
		&Query{ID: exQID, Text: "a", CID: exCID, Hops: MaxHops, Limit: 0xffff},
		&Hits{ID: exQID},
		&Hits{ID: exQID, Hits: []Hit{{FileRecord: FileRecord{ID: exCID, Name: "n"}, Score: -2,
			Sources: []Source{{Peer: exPeer}, {Peer: exPeer, Addrs: []string{"[2001:db8::1]:4000", "192.0.2.1:1"}}}}}},
		&QueryDone{},
		&Summary{Level: MaxSummaryLevels - 1, Depth: MaxSummaryLevels},
		&Summary{Level: 0, Depth: 1, Filter: bytes.Repeat([]byte{0xff}, 128<<10)},
		&GetMeta{},
		&Meta{ID: exCID, Size: 0, PieceSize: 1},
		&Meta{ID: exCID, Size: 1 << 40, PieceSize: 64 << 20, Hashes: maxHashes},
		&Request{Piece: 1<<32 - 1, Offset: 1<<32 - 1, Length: MaxBlockLen},
		&Block{Piece: 1<<32 - 1, Offset: 1<<32 - 1, Data: bytes.Repeat([]byte{0xc1}, MaxBlockLen)},
		&Block{},
	}
	for _, m := range tests {
		frame, err := AppendFrame(nil, m)
		if err != nil {
			t.Errorf("%s: encode: %v", m.Type(), err)
			continue
		}
		got, err := ReadMessage(bytes.NewReader(frame), nil)
		if err != nil {
			t.Errorf("%s: decode: %v", m.Type(), err)
			continue
		}
		if !sameMessage(got, m) {
			t.Errorf("%s: round trip\n got %#v\nwant %#v", m.Type(), got, m)
		}
	}
}

// TestBlockDataAliasesBody pins the documented contract: Block data is not copied.
func TestBlockDataAliasesBody(t *testing.T) {
	body := []byte{0x92, 0x01, 0x02, 'a', 'b', 'c'}
	m, err := Decode(TypeBlock, body)
	if err != nil {
		t.Fatal(err)
	}
	b := m.(*Block)
	if b.Piece != 1 || b.Offset != 2 || string(b.Data) != "abc" {
		t.Fatalf("got %+v", b)
	}
	body[3] = 'X'
	if b.Data[0] != 'X' {
		t.Fatal("Block.Data does not alias the body")
	}
}

// TestDecodeLenient shows what a receiver accepts beyond what an encoder writes:
// unknown keys are skipped (forward compatibility), keys in any order, and a zero
// header for an empty Block. Each must decode to the same value as the canonical form.
func TestDecodeLenient(t *testing.T) {
	tests := []struct {
		name string
		ty   MsgType
		body string
		want Message
	}{
		{"unknown keys", TypePing, "83 a1 78 92 01 c0 a1 73 07 a3 7a7a7a 81 a1 61 c4 02 ffff", &Ping{Seq: 7}},
		{"keys reordered", TypeRequest, "83 a16e 05 a16f 02 a170 01", &Request{Piece: 1, Offset: 2, Length: 5}},
		{"nil for an omitempty field", TypeQueryDone, "83 a171 c0 a173 c0 a16e c0", &QueryDone{}},
		{"wider ints than needed", TypePing, "81 a173 cf0000000000000007", &Ping{Seq: 7}},
		{"str for a string field as str8", TypeQuery, "82 a174 d9 01 78 a168 00", &Query{Text: "x"}},
		{"block header as empty map", TypeBlock, "80 6869", &Block{Data: []byte("hi")}},
	}
	for _, tt := range tests {
		got, err := Decode(tt.ty, unhex(t, tt.body))
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if !sameMessage(got, tt.want) {
			t.Errorf("%s: got %#v, want %#v", tt.name, got, tt.want)
		}
	}
}

func TestTypeString(t *testing.T) {
	for ty, name := range map[MsgType]string{TypeHello: "hello", TypeQueryDone: "query_done",
		TypeBlock: "block", TypeSignal: "signal", 0x40: "type_0x40", 0: "type_0x00"} {
		if ty.String() != name {
			t.Errorf("%d: %q, want %q", ty, ty.String(), name)
		}
	}
	for r, name := range map[Role]string{RoleLeaf: "leaf", RoleSupernode: "supernode",
		RoleTransfer: "transfer", 9: "role_9"} {
		if r.String() != name {
			t.Errorf("role %d: %q, want %q", r, r.String(), name)
		}
	}
	if s := exQID.String(); s != "0102030405060708090a0b0c0d0e0f10" {
		t.Errorf("QueryID.String: %s", s)
	}
}
