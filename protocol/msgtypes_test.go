package protocol

import (
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestMessageTableMatchesSource reads the package's source: every MsgType
// constant has one table entry, whose constructor makes the one struct whose
// Type method returns that constant. A type added in one place and not the
// others fails here.
func TestMessageTableMatchesSource(t *testing.T) {
	fset := token.NewFileSet()
	pkgs, err := parser.ParseDir(fset, ".", func(fi os.FileInfo) bool { return !strings.HasSuffix(fi.Name(), "_test.go") }, 0)
	if err != nil {
		t.Fatal(err)
	}
	consts := map[string]MsgType{}  // TypePing -> 0x04
	structOf := map[string]string{} // TypePing -> Ping, from (*Ping) Type()
	for _, f := range pkgs["protocol"].Files {
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.GenDecl:
				for _, s := range d.Specs {
					vs, ok := s.(*ast.ValueSpec)
					if !ok || d.Tok != token.CONST {
						continue
					}
					if id, ok := vs.Type.(*ast.Ident); !ok || id.Name != "MsgType" {
						continue
					}
					lit, ok := vs.Values[0].(*ast.BasicLit)
					if !ok {
						t.Fatalf("%s: not a literal", vs.Names[0].Name)
					}
					v, err := strconv.ParseUint(lit.Value, 0, 8)
					if err != nil {
						t.Fatal(err)
					}
					consts[vs.Names[0].Name] = MsgType(v)
				}
			case *ast.FuncDecl:
				if d.Name.Name != "Type" || d.Recv == nil || len(d.Body.List) != 1 {
					continue
				}
				star, ok := d.Recv.List[0].Type.(*ast.StarExpr)
				if !ok {
					continue
				}
				ret, ok := d.Body.List[0].(*ast.ReturnStmt)
				if !ok {
					continue
				}
				c, ok := ret.Results[0].(*ast.Ident)
				if !ok {
					t.Fatalf("(*%s).Type does not return a constant", star.X.(*ast.Ident).Name)
				}
				if prev, dup := structOf[c.Name]; dup {
					t.Errorf("%s is the type of both %s and %s", c.Name, prev, star.X.(*ast.Ident).Name)
				}
				structOf[c.Name] = star.X.(*ast.Ident).Name
			}
		}
	}
	if len(consts) != len(messageTypes) || len(structOf) != len(messageTypes) {
		t.Errorf("%d MsgType constants, %d structs with a Type method, %d table entries", len(consts), len(structOf), len(messageTypes))
	}
	for name, code := range consts {
		i, ok := Lookup(code)
		if !ok {
			t.Errorf("%s (0x%02x) is not in the table", name, uint8(code))
			continue
		}
		if got := reflect.TypeOf(i.New()).Elem().Name(); got != structOf[name] {
			t.Errorf("%s: the table makes a %s, the Type method is on %q", name, got, structOf[name])
		}
	}
}

// TestMessageTableRoundTrip: every type's constructor decodes what its
// encoder wrote back to the same value, of the struct the table names.
func TestMessageTableRoundTrip(t *testing.T) {
	byType := map[MsgType]Message{}
	for _, g := range goldens {
		byType[g.msg.Type()] = g.msg
	}
	for _, info := range messageTypes {
		t.Run(info.Name, func(t *testing.T) {
			if z := info.New(); z.Type() != info.Type {
				t.Fatalf("constructor makes a %s", z.Type())
			}
			m := byType[info.Type]
			if m == nil {
				t.Fatal("no sample message")
			}
			frame, err := AppendFrame(nil, m)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Decode(info.Type, frame[HeaderSize:])
			if err != nil {
				t.Fatal(err)
			}
			if reflect.TypeOf(got) != reflect.TypeOf(info.New()) || !sameMessage(got, m) {
				t.Fatalf("round trip\n got %#v\nwant %#v", got, m)
			}
			if got.Type().String() != info.Name {
				t.Fatalf("named %s", got.Type())
			}
		})
	}
}

// TestMessageTableAppendOnly: versions never go back down the list, and the
// Version constants name the first version of the types they introduced.
func TestMessageTableAppendOnly(t *testing.T) {
	for i := 1; i < len(messageTypes); i++ {
		if messageTypes[i].Since < messageTypes[i-1].Since {
			t.Errorf("%s (v%d) after %s (v%d)", messageTypes[i].Name, messageTypes[i].Since, messageTypes[i-1].Name, messageTypes[i-1].Since)
		}
	}
	first := map[uint16]MsgType{}
	for _, m := range messageTypes {
		if _, ok := first[m.Since]; !ok {
			first[m.Since] = m.Type
		}
	}
	for v, ty := range map[uint16]MsgType{VersionSignal: TypeNATReport, VersionSwarm: TypeJoin, VersionMembers: TypeMembers,
		VersionUsers: TypeUserPut, VersionElection: TypeCandidacy, VersionAdmission: TypeCertificate, VersionOneHop: TypeSummaries,
		VersionKeyRing: TypeTermPuts, VersionMemberTree: TypeMemberTree} {
		if first[v] != ty {
			t.Errorf("v%d begins with %s, want %s", v, first[v], ty)
		}
	}
}

// TestMessageTableMatchesSpec: the message table in doc.go lists the same
// codes, names, versions and streams as the code.
func TestMessageTableMatchesSpec(t *testing.T) {
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile(`(?m)^//\t0x([0-9a-f]{2})  (\S+)\s+v(\d+)\s+(\S+)(.*)`)
	rows := row.FindAllStringSubmatch(string(doc), -1)
	if len(rows) != len(messageTypes) {
		t.Fatalf("the spec lists %d message types, the table %d", len(rows), len(messageTypes))
	}
	for _, r := range rows {
		code, _ := strconv.ParseUint(r[1], 16, 8)
		v, _ := strconv.Atoi(r[3])
		i, ok := Lookup(MsgType(code))
		if !ok {
			t.Errorf("spec: 0x%s %s is not in the table", r[1], r[2])
			continue
		}
		var on Streams
		switch r[4] {
		case "message":
			on = StreamMessage
			if strings.Contains(r[5], "first frame") || strings.Contains(r[5], "answers hello") {
				on = StreamHandshake
			}
		case "transfer", "swarm", "deliver":
			on = StreamTransfer
		case "any":
			on = streamAny
		}
		if i.Name != r[2] || int(i.Since) != v || i.Streams != on {
			t.Errorf("spec: 0x%s %s v%d on %s; table: %s v%d on %b", r[1], r[2], v, r[4], i.Name, i.Since, i.Streams)
		}
	}
}

func TestCheckIncoming(t *testing.T) {
	sn, leaf := RolesOf(RoleSupernode), RolesOf(RoleLeaf)
	tests := []struct {
		t       MsgType
		version uint16
		from    Roles
		want    error
	}{
		{TypeMembers, VersionMembers, sn, nil},
		{TypeMembers, MaxVersion, sn, nil},
		{TypeMembers, VersionMembers - 1, sn, ErrUnsupportedVersion},
		{TypeMembers, MaxVersion, leaf, ErrForbidden},
		{TypePublish, 1, leaf, nil},
		{TypePublish, 1, sn, ErrForbidden},
		{TypeNATReport, MaxVersion, RolesOf(RoleTransfer), ErrForbidden},
		{TypeRelayLoad, VersionSignal, RolesOf(RoleRelay), nil},
		{TypeRelayLoad, VersionSignal, leaf, ErrForbidden},
		{TypeCertificate, VersionAdmission - 1, sn, ErrUnsupportedVersion},
		{TypePing, 1, RolesOf(RoleProbe), nil},
		{TypePong, 1, RolesOf(RoleTransfer), nil},
		{TypeError, 1, RolesOf(RoleRelay), nil},
		{TypeHello, MaxVersion, leaf, ErrBadRequest},
		{TypeWelcome, MaxVersion, sn, ErrBadRequest},
		{TypeJoin, MaxVersion, RolesOf(RoleTransfer), ErrBadRequest},
		{TypeBlock, MaxVersion, RolesOf(RoleTransfer), ErrBadRequest},
		{TypePublish, 1, AnyRole, nil},
		{TypeMembers, VersionMembers - 1, AnyRole, ErrUnsupportedVersion},
		{TypeTermLookup, VersionKeyRing, sn, nil},
		{TypeTermHolders, VersionKeyRing - 1, sn, ErrUnsupportedVersion},
		{TypeTermPuts, MaxVersion, leaf, ErrForbidden},
		{TypeMemberTree, VersionMemberTree, sn, nil},
		{TypeMemberTree, VersionMemberTree - 1, sn, ErrUnsupportedVersion},
		{TypeMemberTree, MaxVersion, leaf, ErrForbidden},
		{TypeMemberWant, VersionMemberTree, sn, nil},
		{TypeMemberDigest, MaxVersion, leaf, ErrForbidden},
		{0, MaxVersion, AnyRole, ErrUnknownType},
		{TypeMemberWant + 1, MaxVersion, AnyRole, ErrUnknownType},
	}
	for _, tt := range tests {
		err := CheckIncoming(tt.t, tt.version, tt.from)
		if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
			t.Errorf("%s at v%d from a %s: %v, want %v", tt.t, tt.version, tt.from, err, tt.want)
		}
	}
	if err := CheckIncoming(TypeMembers, MaxVersion, leaf); err == nil || err.Error() != "forbidden: members from a leaf; only a supernode sends it" {
		t.Errorf("error reads %q", err)
	}
}

// TestCheckIncomingEverySender: on the message stream, every role the table
// names may send its types from their first version on, and no other role may.
func TestCheckIncomingEverySender(t *testing.T) {
	for _, i := range messageTypes {
		if i.Streams&StreamMessage == 0 {
			continue
		}
		for r := RoleLeaf; r <= RoleRelay; r++ {
			for v := MinVersion; v <= MaxVersion; v++ {
				err := CheckIncoming(i.Type, v, RolesOf(r))
				switch {
				case v < i.Since:
					if !errors.Is(err, ErrUnsupportedVersion) {
						t.Errorf("%s at v%d: %v", i.Name, v, err)
					}
				case i.Senders.Has(r) != (err == nil):
					t.Errorf("%s from a %s at v%d: %v (senders: %s)", i.Name, r, v, err, i.Senders)
				case err != nil && !errors.Is(err, ErrForbidden):
					t.Errorf("%s from a %s: %v, want ErrForbidden", i.Name, r, err)
				}
			}
		}
	}
}

func TestCheckTransfer(t *testing.T) {
	tests := []struct {
		t       MsgType
		version uint16
		want    error
		reads   string // the error's text, when set
	}{
		{TypeGetMeta, 1, nil, ""},
		{TypeBlock, 1, nil, ""},
		{TypeError, 1, nil, ""},
		{TypeJoin, VersionSwarm, nil, ""},
		{TypeReject, MaxVersion, nil, ""},
		{TypeDeliver, VersionUsers, nil, ""},
		{TypeDelivered, MaxVersion, nil, ""},
		{TypeJoin, VersionSwarm - 1, ErrUnsupportedVersion, "no common protocol version: join is a v3 message, the connection speaks v2"},
		{TypeDeliver, VersionUsers - 1, ErrUnsupportedVersion, ""},
		{TypePing, MaxVersion, ErrBadRequest, "bad request: ping belongs on the message stream, not a transfer stream"},
		{TypeHello, MaxVersion, ErrBadRequest, "bad request: hello belongs on the handshake, not a transfer stream"},
		{TypeWelcome, 1, ErrBadRequest, ""},
		{TypeMembers, MaxVersion, ErrBadRequest, ""},
		{TypeUserStore, MaxVersion, ErrBadRequest, ""},
		{TypeCertificate, VersionAdmission - 1, ErrUnsupportedVersion, ""},
		{TypeTermPuts, VersionKeyRing - 1, ErrUnsupportedVersion, ""},
		{TypeTermLookup, MaxVersion, ErrBadRequest, "bad request: term_lookup belongs on the message stream, not a transfer stream"},
		{0, MaxVersion, ErrUnknownType, "unknown message type: 0x00"},
		{TypeMemberWant + 1, MaxVersion, ErrUnknownType, ""},
	}
	for _, tt := range tests {
		err := CheckTransfer(tt.t, tt.version)
		if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
			t.Errorf("%s at v%d: %v, want %v", tt.t, tt.version, err, tt.want)
		}
		if tt.reads != "" && (err == nil || err.Error() != tt.reads) {
			t.Errorf("%s at v%d: error reads %q, want %q", tt.t, tt.version, err, tt.reads)
		}
	}
}

// TestTransferTypes: the types the swarm, downloads and deliveries send on
// transfer streams are exactly those the table puts there.
func TestTransferTypes(t *testing.T) {
	want := map[MsgType]bool{TypeError: true, TypeGetMeta: true, TypeMeta: true, TypeRequest: true, TypeBlock: true,
		TypeJoin: true, TypeBitfield: true, TypeHave: true, TypeInterest: true, TypeNoInterest: true, TypeChoke: true,
		TypeUnchoke: true, TypeCancel: true, TypePeers: true, TypeReject: true, TypeDeliver: true, TypeDelivered: true}
	for _, i := range messageTypes {
		if on := i.Streams&StreamTransfer != 0; on != want[i.Type] {
			t.Errorf("%s: on transfer streams %v, want %v", i.Name, on, want[i.Type])
		}
		for v := MinVersion; v <= MaxVersion; v++ {
			err := CheckTransfer(i.Type, v)
			if ok := want[i.Type] && v >= i.Since; ok != (err == nil) {
				t.Errorf("%s at v%d: %v", i.Name, v, err)
			}
		}
	}
}

func TestSupports(t *testing.T) {
	for _, tt := range []struct {
		v    uint16
		t    MsgType
		want bool
	}{
		{1, TypeQuery, true},
		{1, TypeSignal, false},
		{VersionSignal, TypeSignal, true},
		{VersionUsers - 1, TypeUserGet, false},
		{VersionUsers, TypeDeliver, true},
		{MaxVersion, TypeCertificate, true},
		{VersionKeyRing - 1, TypeTermPuts, false},
		{VersionKeyRing, TypeTermHolders, true},
		{VersionMemberTree - 1, TypeMemberTree, false},
		{VersionMemberTree, TypeMemberTree, true},
		{MaxVersion, TypeMemberWant + 1, false},
		{MaxVersion, 0, false},
	} {
		if got := Supports(tt.v, tt.t); got != tt.want {
			t.Errorf("Supports(%d, %s) = %v", tt.v, tt.t, got)
		}
	}
}

func TestRoleListener(t *testing.T) {
	for dialler, want := range map[Role]Role{RoleLeaf: RoleSupernode, RoleSupernode: RoleSupernode,
		RoleRelay: RoleSupernode, RoleTransfer: RoleTransfer, RoleProbe: RoleProbe} {
		if got := dialler.Listener(); got != want {
			t.Errorf("%s dials a %s, want a %s", dialler, got, want)
		}
	}
	if s := RolesOf(RoleLeaf, RoleSupernode).String(); s != "leaf or supernode" {
		t.Errorf("roles read %q", s)
	}
	if RolesOf(Role(0), Role(9)) != 0 || AnyRole.Has(Role(9)) {
		t.Error("roles outside the protocol's in a set")
	}
}
