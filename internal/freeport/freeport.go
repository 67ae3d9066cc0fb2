// Package freeport finds loopback ports for tests that start programs which
// bind a port of their own choosing: turnserver, or a supernode restarted at
// the address it had.
package freeport

import (
	"crypto/rand"
	"encoding/binary"
	"net"
	"strconv"
	"testing"
)

// Loopback is a 127.0.0.1 port that nothing held a moment ago, for UDP and
// for TCP (a supernode and a TURN server listen on both). It lies below the
// kernel's ephemeral range (32768 up), so no socket another test opens
// without a port is given it before the program binds it.
func Loopback(t testing.TB) int {
	t.Helper()
	var b [2]byte
	for range 200 {
		rand.Read(b[:])
		port := 20000 + int(binary.BigEndian.Uint16(b[:]))%12000
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		u, err := net.ListenPacket("udp4", addr)
		if err != nil {
			continue
		}
		l, err := net.Listen("tcp4", addr)
		u.Close()
		if err != nil {
			continue
		}
		l.Close()
		return port
	}
	t.Fatal("no loopback port free for UDP and TCP in 200 tries")
	return 0
}
