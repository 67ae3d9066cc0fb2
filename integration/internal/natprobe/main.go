// Command natprobe is the tiny UDP/TCP probe that the integration NAT lab runs
// inside its network namespaces to show what each NAT does to a flow. It is a
// test tool: it trusts its peers and is not meant to face a real network.
//
//	natprobe echo -udp :3478[,:3479] [-tcp :3478]
//	    Answers each UDP datagram with its payload followed by the source
//	    address it saw ("ip:port"). A TCP connection first gets that address as
//	    a line, then may send one command line: "sink" (the server counts bytes
//	    until EOF and answers the count) or "source N" (the server sends N
//	    bytes and closes). Prints "ready" once every socket is bound.
//	natprobe ask -from :PORT server...
//	    From one UDP socket, asks each server in turn and prints the address it
//	    reported, one per line, or "timeout". Exits 1 if any server timed out.
//	natprobe askt server
//	    The same over TCP.
//	natprobe send -n BYTES server | natprobe fetch -n BYTES server
//	    Sends BYTES to a TCP echo server, or fetches them from it, and prints
//	    "bytes N seconds S mbit R".
//	natprobe punch -from :PORT -for D target...
//	    Sends "ping" to every target each -every from one UDP socket, for D,
//	    and prints "recv SRC" the first time a datagram comes from SRC.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// maxTransfer caps send, fetch and source sizes so a typo cannot fill a link
// for minutes.
const maxTransfer = 1 << 30

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch mode, args := os.Args[1], os.Args[2:]; mode {
	case "echo":
		err = echo(args)
	case "ask":
		err = ask(args)
	case "askt":
		err = askTCP(args)
	case "send", "fetch":
		err = transfer(mode, args)
	case "punch":
		err = punch(args)
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "natprobe:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: natprobe echo|ask|askt|send|fetch|punch [flags] [addr...]")
	os.Exit(2)
}

func parse(fs *flag.FlagSet, args []string) {
	fs.Usage = usage
	if err := fs.Parse(args); err != nil {
		usage()
	}
}

func echo(args []string) error {
	fs := flag.NewFlagSet("echo", flag.ExitOnError)
	udp := fs.String("udp", "", "comma-separated UDP listen addresses")
	tcp := fs.String("tcp", "", "TCP listen address")
	parse(fs, args)
	if *udp == "" && *tcp == "" {
		return errors.New("echo needs -udp or -tcp")
	}
	errc := make(chan error, 1)
	if *udp != "" {
		for _, a := range strings.Split(*udp, ",") {
			c, err := net.ListenPacket("udp4", a)
			if err != nil {
				return err
			}
			go func() { errc <- echoUDP(c) }()
		}
	}
	if *tcp != "" {
		ln, err := net.Listen("tcp4", *tcp)
		if err != nil {
			return err
		}
		go func() { errc <- echoTCP(ln) }()
	}
	fmt.Println("ready")
	return <-errc
}

func echoUDP(c net.PacketConn) error {
	buf := make([]byte, 1500)
	for {
		n, src, err := c.ReadFrom(buf)
		if err != nil {
			return err
		}
		reply := fmt.Appendf(nil, "%s %s", buf[:n], src)
		c.WriteTo(reply, src) // a lost answer is the asker's to retry
	}
}

func echoTCP(ln net.Listener) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go serveTCP(c)
	}
}

func serveTCP(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute))
	if _, err := fmt.Fprintf(c, "%s\n", c.RemoteAddr()); err != nil {
		return
	}
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		return // askt reads the address and hangs up
	}
	switch f := strings.Fields(line); {
	case len(f) == 1 && f[0] == "sink":
		n, _ := io.Copy(io.Discard, r)
		fmt.Fprintf(c, "%d\n", n)
	case len(f) == 2 && f[0] == "source":
		n, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil || n < 0 || n > maxTransfer {
			return
		}
		io.CopyN(c, zeros{}, n)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func ask(args []string) error {
	fs := flag.NewFlagSet("ask", flag.ExitOnError)
	from := fs.String("from", ":0", "local UDP address")
	timeout := fs.Duration("timeout", 300*time.Millisecond, "wait for each answer")
	tries := fs.Int("tries", 3, "requests per server")
	parse(fs, args)
	c, err := net.ListenPacket("udp4", *from)
	if err != nil {
		return err
	}
	defer c.Close()
	failed := 0
	for i, s := range fs.Args() {
		dst, err := net.ResolveUDPAddr("udp4", s)
		if err != nil {
			return err
		}
		mapped, err := askOne(c, dst, fmt.Sprintf("ask %d", i), *timeout, *tries)
		if err != nil {
			fmt.Println("timeout")
			failed++
			continue
		}
		fmt.Println(mapped)
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d servers did not answer", failed, fs.NArg())
	}
	return nil
}

// askOne sends req to dst up to tries times and returns the address in the
// first matching answer; answers to earlier requests are skipped.
func askOne(c net.PacketConn, dst *net.UDPAddr, req string, timeout time.Duration, tries int) (string, error) {
	buf := make([]byte, 1500)
	for range max(tries, 1) {
		if _, err := c.WriteTo([]byte(req), dst); err != nil {
			return "", err
		}
		deadline := time.Now().Add(timeout)
		c.SetReadDeadline(deadline)
		for time.Now().Before(deadline) {
			n, src, err := c.ReadFrom(buf)
			if err != nil {
				break
			}
			got, ok := strings.CutPrefix(string(buf[:n]), req+" ")
			if ok && src.String() == dst.String() {
				return got, nil
			}
		}
	}
	return "", os.ErrDeadlineExceeded
}

func askTCP(args []string) error {
	fs := flag.NewFlagSet("askt", flag.ExitOnError)
	timeout := fs.Duration("timeout", 2*time.Second, "connect and answer timeout")
	parse(fs, args)
	if fs.NArg() != 1 {
		usage()
	}
	c, err := net.DialTimeout("tcp4", fs.Arg(0), *timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(*timeout))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	fmt.Print(line)
	return nil
}

func transfer(mode string, args []string) error {
	fs := flag.NewFlagSet(mode, flag.ExitOnError)
	size := fs.Int64("n", 1<<20, "bytes")
	timeout := fs.Duration("timeout", 30*time.Second, "whole transfer")
	parse(fs, args)
	if fs.NArg() != 1 || *size < 0 || *size > maxTransfer {
		usage()
	}
	c, err := net.DialTimeout("tcp4", fs.Arg(0), *timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(*timeout))
	r := bufio.NewReader(c)
	if _, err := r.ReadString('\n'); err != nil {
		return err
	}
	start := time.Now()
	var n int64
	if mode == "send" {
		if _, err := fmt.Fprintf(c, "sink\n"); err != nil {
			return err
		}
		if _, err := io.CopyN(c, zeros{}, *size); err != nil {
			return err
		}
		c.(*net.TCPConn).CloseWrite()
		// The count comes back only once every byte has arrived, so the
		// time measured is the link's, not the send buffer's.
		line, err := r.ReadString('\n')
		if err != nil {
			return err
		}
		if n, err = strconv.ParseInt(strings.TrimSpace(line), 10, 64); err != nil {
			return err
		}
	} else {
		if _, err := fmt.Fprintf(c, "source %d\n", *size); err != nil {
			return err
		}
		if n, err = io.Copy(io.Discard, r); err != nil {
			return err
		}
	}
	secs := time.Since(start).Seconds()
	fmt.Printf("bytes %d seconds %.3f mbit %.2f\n", n, secs, float64(n)*8/secs/1e6)
	if n != *size {
		return fmt.Errorf("moved %d bytes, want %d", n, *size)
	}
	return nil
}

func punch(args []string) error {
	fs := flag.NewFlagSet("punch", flag.ExitOnError)
	from := fs.String("from", ":0", "local UDP address")
	every := fs.Duration("every", 100*time.Millisecond, "time between pings")
	total := fs.Duration("for", 2*time.Second, "how long to run")
	parse(fs, args)
	c, err := net.ListenPacket("udp4", *from)
	if err != nil {
		return err
	}
	defer c.Close()
	var dsts []*net.UDPAddr
	for _, s := range fs.Args() {
		dst, err := net.ResolveUDPAddr("udp4", s)
		if err != nil {
			return err
		}
		dsts = append(dsts, dst)
	}
	end := time.Now().Add(*total)
	c.SetReadDeadline(end)
	go func() {
		t := time.NewTicker(max(*every, time.Millisecond))
		defer t.Stop()
		for time.Now().Before(end) {
			for _, d := range dsts {
				// A blocked or unreachable target is what some runs test.
				c.WriteTo([]byte("ping"), d)
			}
			<-t.C
		}
	}()
	seen := map[string]bool{}
	buf := make([]byte, 1500)
	for {
		_, src, err := c.ReadFrom(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil
		}
		if err != nil {
			return err
		}
		if s := src.String(); !seen[s] {
			seen[s] = true
			fmt.Println("recv", s)
		}
	}
}
