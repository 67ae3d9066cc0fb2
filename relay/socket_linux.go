package relay

import (
	"net"
	"syscall"
)

// forceBuffers sets n each way past the system's caps, where the process
// may; it leaves the sizes set so far when it may not.
func forceBuffers(uc *net.UDPConn, n int) {
	rc, err := uc.SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) {
		syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, n)
		syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUFFORCE, n)
	})
}
