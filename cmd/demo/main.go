// Command demo runs a small overlay on loopback and uses it the way a person
// would: three supernodes in a line, six peers sharing sample music and
// documents, a search for "Hey Jude" from the far end, and a verified download.
// With --keep the overlay stays up so you can try the `peer` command against it.
package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/supernet-p2p/supernet/content/contenttest"
	"github.com/supernet-p2p/supernet/internal/cli"
	"github.com/supernet-p2p/supernet/internal/peercli"
	"github.com/supernet-p2p/supernet/internal/peerlead"
	"github.com/supernet-p2p/supernet/peer"
	"github.com/supernet-p2p/supernet/peer/apitype"
	"github.com/supernet-p2p/supernet/peer/localapi"
	"github.com/supernet-p2p/supernet/protocol"
	"github.com/supernet-p2p/supernet/supernode"
)

func main() {
	cli.LogUnits()
	opts, err := parseArgs(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		os.Exit(cli.ExitUsage) // the flag package printed it, with the usage
	}
	if opts.version {
		fmt.Println("demo", cli.Version())
		return
	}
	if err := run(opts); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// options are the demo's flags.
type options struct {
	keep    bool   // keep the overlay up after the demo
	dir     string // the demo's data; empty for a temporary folder
	verbose bool   // show the nodes' logs
	version bool   // print the version and exit
}

// parseArgs reads the flags in args (without the program name); only a
// usage message, on -h or a bad flag, goes to usage.
func parseArgs(args []string, usage io.Writer) (options, error) {
	var o options
	f := flag.NewFlagSet("demo", flag.ContinueOnError)
	f.SetOutput(usage)
	f.BoolVar(&o.keep, "keep", false, "keep the overlay running after the demo until Ctrl-C")
	f.StringVar(&o.dir, "dir", "", "folder for the demo's data (default: a new temporary folder, removed at the end)")
	f.BoolVar(&o.verbose, "v", false, "show the nodes' logs")
	f.BoolVar(&o.version, "version", false, "print the version and exit")
	if err := f.Parse(args); err != nil {
		return options{}, err
	}
	if f.NArg() > 0 {
		err := fmt.Errorf("unexpected argument %q: the demo takes flags only", f.Arg(0))
		fmt.Fprintf(usage, "%v\n", err)
		f.Usage()
		return options{}, err
	}
	return o, nil
}

type song struct{ file, title, artist, album string }

type user struct {
	name  string
	sn    int
	songs []song
	docs  map[string]string
}

var users = []user{
	{name: "alice", sn: 0, songs: []song{
		{"The Beatles - Hey Jude.mp3", "Hey Jude", "The Beatles", "Hey Jude"},
		{"The Beatles - Let It Be.mp3", "Let It Be", "The Beatles", "Let It Be"},
	}},
	{name: "bruno", sn: 0, songs: []song{
		{"track07.mp3", "Hey Jude", "Wilson Pickett", "Hey Jude"}, // found by its tags only
	}, docs: map[string]string{"recipes/gazpacho.txt": "tomatoes, cucumber, pepper, olive oil\n"}},
	{name: "chen", sn: 1, songs: []song{
		{"Nina Simone - Feeling Good.mp3", "Feeling Good", "Nina Simone", "I Put a Spell on You"},
	}},
	{name: "dana", sn: 1, docs: map[string]string{"notes/overlay-reading-list.txt": "KaZaA, Skype, Gnutella, Napster\n"}},
	{name: "emil", sn: 2, songs: []song{
		{"The Beatles - Hey Jude.mp3", "Hey Jude", "The Beatles", "Hey Jude"}, // same bytes as alice's
	}},
	{name: "fatou", sn: 2},
}

func run(opts options) error {

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := zerolog.Nop()
	if opts.verbose {
		log = zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: time.TimeOnly}).With().Timestamp().Logger()
	}
	root := opts.dir
	if root == "" {
		// Short: unix socket paths are limited to about 100 bytes.
		d, err := os.MkdirTemp("", "supernet-demo")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		root = d
	}

	step("An operator makes the overlay's network key and admits three supernodes to it")
	netKey, err := protocol.CreateKeyFile(filepath.Join(root, "operator", protocol.NetworkKeyFile))
	if err != nil {
		return err
	}
	network := protocol.NetworkIDOf(netKey)
	fmt.Printf("  network %s: only keys it certifies may serve as supernodes or relays\n", network)

	step("Starting three supernodes on 127.0.0.1, linked in a line: sn0 - sn1 - sn2")
	var sns []*supernode.Server
	for i := 0; i < 3; i++ {
		var join []string
		if i > 0 {
			join = []string{sns[i-1].ID().String() + "@" + sns[i-1].Addr().String()}
		}
		dd := filepath.Join(root, fmt.Sprintf("sn%d", i))
		id, err := protocol.LoadOrCreateIdentity(dd)
		if err != nil {
			return err
		}
		chain := protocol.Admit(netKey, id.Key.Public().(ed25519.PublicKey), protocol.CertSupernode|protocol.CertAdmit, time.Now().Add(24*time.Hour))
		s, err := supernode.New(supernode.Config{
			Listen: "127.0.0.1:0", Join: join, DataDir: dd, Network: network, Chain: chain,
			Log: log.With().Str("role", fmt.Sprintf("sn%d", i)).Logger(),
		})
		if err != nil {
			return err
		}
		defer s.Close()
		go s.Serve(ctx)
		sns = append(sns, s)
		fmt.Printf("  sn%d  udp %-21s  %s\n", i, s.Addr(), s.ID().Short())
	}

	step("Starting six peers, two on each supernode, each sharing a folder")
	dataDirs := map[string]string{}
	shareDirs := map[string]string{}
	webURL := "" // dana's web page, with --keep
	for ui, u := range users {
		share := filepath.Join(root, u.name, "share")
		if err := os.MkdirAll(share, 0o755); err != nil {
			return err
		}
		for _, s := range u.songs {
			// Same song, same bytes: seed by title and artist, so alice's and emil's copies match.
			seed := int64(len(s.title)*1000 + len(s.artist))
			if err := contenttest.WriteID3v2MP3(filepath.Join(share, s.file), s.title, s.artist, s.album, 3<<20, seed); err != nil {
				return err
			}
		}
		for name, text := range u.docs {
			p := filepath.Join(share, name)
			os.MkdirAll(filepath.Dir(p), 0o755)
			if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
				return err
			}
		}
		dd := filepath.Join(root, u.name, "data")
		web := ""
		if opts.keep && u.name == "dana" {
			web = "127.0.0.1:0" // the page to try afterwards
		}
		d, err := peer.New(peer.Config{
			Web: web, DownloadDir: filepath.Join(root, u.name, "downloads"),
			DataDir: dd, ShareDir: share, Name: u.name, Username: u.name, Listen: "127.0.0.1:0", Network: network,
			Supernodes: []string{sns[u.sn].ID().String() + "@" + sns[u.sn].Addr().String()},
			// One supernode each, so the search below takes the line; a
			// real peer stays attached to three.
			Attach:    1,
			StartLead: peerlead.Start,
			Log:       log.With().Str("role", u.name).Logger(),
		})
		if err != nil {
			return err
		}
		defer d.Close()
		go d.Serve(ctx)
		dataDirs[u.name], shareDirs[u.name] = dd, share
		if web != "" {
			webURL = d.WebURL()
		}
		fmt.Printf("  %-6s on sn%d  sharing %d files  (data dir %s)\n", u.name, u.sn, len(u.songs)+len(u.docs), dd)
		_ = ui
	}

	// Wait until every peer is attached and the keys of both supernodes
	// with a Hey Jude have reached the keyword ring's keepers (with three
	// supernodes, each keeps them all): fatou finds all three copies.
	if err := waitReady(ctx, dataDirs, "fatou", "hey jude", 3); err != nil {
		return err
	}

	fatou := dataDirs["fatou"]
	step(`fatou (on sn2) searches for "Hey Jude": sn2 answers from its own index, finds on the keyword ring (it keeps every word of an overlay of three) that sn0 holds both words, and sends the query straight there; sn1 is not asked`)
	if err := cmd(fatou, "search", "Hey Jude"); err != nil {
		return err
	}
	var hits []apitype.HitJSON
	if _, err := localapi.NewClient(fatou).Search(ctx, apitype.SearchRequest{Query: "hey jude beatles"}, func(h []apitype.HitJSON) { hits = append(hits, h...) }); err != nil {
		return err
	}
	if len(hits) == 0 {
		return errors.New("the Beatles' Hey Jude was not found")
	}
	id := hits[0].ContentID

	out := filepath.Join(root, "fatou", "downloads")
	os.MkdirAll(out, 0o755)
	step("fatou downloads it; every 256 KiB piece is checked against its SHA-256 before it is written")
	if err := cmd(fatou, "get", id, "-o", out); err != nil {
		return err
	}
	got, err := os.ReadFile(filepath.Join(out, "The Beatles - Hey Jude.mp3"))
	if err != nil {
		return err
	}
	orig, err := os.ReadFile(filepath.Join(shareDirs["alice"], "The Beatles - Hey Jude.mp3"))
	if err != nil {
		return err
	}
	if !bytes.Equal(got, orig) {
		return errors.New("downloaded file differs from the original")
	}
	fmt.Printf("  byte-identical to alice's copy (%d bytes)\n", len(got))

	step("fatou's status")
	if err := cmd(fatou, "status"); err != nil {
		return err
	}

	step("fatou finds alice by name in the username directory, and sends her a note")
	// Records reach their replicas within a gossip round of the ring settling.
	var found error
	for i := 0; i < 50; i++ {
		if _, found = localapi.NewClient(fatou).Lookup(ctx, "alice"); found == nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if found != nil {
		return fmt.Errorf("looking up alice: %w", found)
	}
	if err := cmd(fatou, "lookup", "alice"); err != nil {
		return err
	}
	note := filepath.Join(root, "fatou", "thanks.txt")
	if err := os.WriteFile(note, []byte("Thanks for Hey Jude!\n"), 0o644); err != nil {
		return err
	}
	if err := cmd(fatou, "send", "alice", note); err != nil {
		return err
	}
	if err := cmd(dataDirs["alice"], "inbox"); err != nil {
		return err
	}

	if !opts.keep {
		step("Done. Run with --keep to leave the overlay up and try the peer command yourself.")
		return nil
	}
	step("The overlay stays up until Ctrl-C. In another terminal, for example:")
	fmt.Printf("  export PEER_DATA_DIR=%s\n  go run ./cmd/peer search beatles\n  go run ./cmd/peer status\n", dataDirs["dana"])
	fmt.Printf("or open dana's web page in a browser on this machine:\n  %s\n", webURL)
	<-ctx.Done()
	return nil
}

func step(s string) { fmt.Printf("\n== %s\n", s) }

// cmd runs the real `peer` command code against a data directory and shows it.
func cmd(dataDir string, args ...string) error {
	shown := make([]string, len(args))
	for i, a := range args {
		if strings.ContainsAny(a, " /") && !strings.HasPrefix(a, "/") {
			a = fmt.Sprintf("%q", a)
		}
		shown[i] = a
	}
	fmt.Printf("$ PEER_DATA_DIR=%s peer %s\n", dataDir, strings.Join(shown, " "))
	if code := peercli.Main(append([]string{"--data-dir", dataDir}, args...)); code != 0 {
		return fmt.Errorf("peer %s exited with %d", args[0], code)
	}
	return nil
}

// waitReady polls until every peer is attached and a search from `from` for q
// finds at least sources sources in all.
func waitReady(ctx context.Context, dataDirs map[string]string, from, q string, sources int) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for {
		ready := true
		for _, dd := range dataDirs {
			st, err := localapi.NewClient(dd).Status(ctx)
			if err != nil || !st.Supernode.Connected {
				ready = false
				break
			}
		}
		if ready {
			n := 0
			localapi.NewClient(dataDirs[from]).Search(ctx, apitype.SearchRequest{Query: q}, func(hs []apitype.HitJSON) {
				for _, h := range hs {
					n += len(h.Sources)
				}
			})
			if n >= sources {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("overlay not ready in 20 s: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}
