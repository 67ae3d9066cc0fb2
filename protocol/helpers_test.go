package protocol

import (
	"bytes"
	"encoding/hex"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// Fixed IDs for examples, so the golden bytes never change.
var (
	exCID  = fillCID(0x11)
	exCID2 = fillCID(0x22)
	exQID  = QueryID{0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10}
	exPeer = fillPeer(0x33)
	exSN   = fillPeer(0x22)
	exLead = fillPeer(0x55)
	exNet  = NetworkID(fillPeer(0x66))
	// exChain is one certificate, as the network key issues it.
	exChain = Chain{{Key: bytes.Repeat([]byte{0x11}, 32), Roles: CertSupernode | CertAdmit, Expires: 1800000000,
		Sig: bytes.Repeat([]byte{0x22}, 64)}}
	exUser = UserRecord{Name: "alice", Key: bytes.Repeat([]byte{0x11}, 32), Seq: 2, Expires: 1700000000,
		Supernodes: []PeerID{{0x33}}, Addrs: []string{"192.0.2.1:4000"}, NAT: NATEndpointIndependent,
		Sig: bytes.Repeat([]byte{0x22}, 64)}
)

func fillCID(b byte) (c ContentID) {
	for i := range c {
		c[i] = b
	}
	return c
}

func fillPeer(b byte) (p PeerID) {
	for i := range p {
		p[i] = b
	}
	return p
}

// unhex decodes a hex literal that may contain spaces and newlines.
func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatalf("bad hex literal: %v", err)
	}
	return b
}

// rawBody encodes v the way the package does but without validate, to build bodies
// that a conforming sender would refuse to send.
func rawBody(t testing.TB, v any) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.UseCompactInts(true)
	if err := enc.Encode(v); err != nil {
		t.Fatalf("raw encode: %v", err)
	}
	return buf.Bytes()
}

// sameMessage compares decoded messages field by field. It treats a nil slice and
// an empty one as equal (an omitempty field that was sent empty comes back nil) and
// NaN as equal to NaN; everything else must match exactly.
func sameMessage(a, b Message) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return sameValue(reflect.ValueOf(a), reflect.ValueOf(b))
}

func sameValue(a, b reflect.Value) bool {
	if a.Type() != b.Type() {
		return false
	}
	switch a.Kind() {
	case reflect.Pointer, reflect.Interface:
		if a.IsNil() || b.IsNil() {
			return a.IsNil() == b.IsNil()
		}
		return sameValue(a.Elem(), b.Elem())
	case reflect.Slice, reflect.Array:
		if a.Len() != b.Len() {
			return false
		}
		for i := 0; i < a.Len(); i++ {
			if !sameValue(a.Index(i), b.Index(i)) {
				return false
			}
		}
		return true
	case reflect.Struct:
		for i := 0; i < a.NumField(); i++ {
			if !sameValue(a.Field(i), b.Field(i)) {
				return false
			}
		}
		return true
	case reflect.Bool:
		return a.Bool() == b.Bool()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return a.Int() == b.Int()
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return a.Uint() == b.Uint()
	case reflect.Float32, reflect.Float64:
		x, y := a.Float(), b.Float()
		return x == y || math.IsNaN(x) && math.IsNaN(y)
	case reflect.String:
		return a.String() == b.String()
	}
	panic("sameValue: unhandled kind " + a.Kind().String())
}
