// Command peer runs a peer daemon (`peer up`) and talks to it (`peer search`,
// `peer get`, `peer status`, `peer rescan`) over its control socket.
package main

import (
	"os"

	"github.com/supernet-p2p/supernet/internal/peercli"
)

func main() { os.Exit(peercli.Main(os.Args[1:])) }
