package relay

import "net"

// socketBuffer is what a relay socket, and a client's socket to its relay,
// ask of the kernel each way. A fast QUIC flow's bursts overflow the usual
// 208 KiB (quic-go asks 7 MiB for its own sockets), and each datagram lost
// there costs the flow its congestion window.
const socketBuffer = 4 << 20

// growBuffers asks for socketBuffer on pc, if it is a UDP socket, and
// returns pc. The kernel caps the size at net.core.rmem_max and wmem_max
// unless the process may override them (Linux, CAP_NET_ADMIN), as quic-go
// does for its own sockets.
func growBuffers(pc net.PacketConn) net.PacketConn {
	if uc, ok := pc.(*net.UDPConn); ok {
		uc.SetReadBuffer(socketBuffer)
		uc.SetWriteBuffer(socketBuffer)
		forceBuffers(uc, socketBuffer)
	}
	return pc
}
