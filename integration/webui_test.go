package integration

import (
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/supernet-p2p/supernet/content/contenttest"
	"github.com/supernet-p2p/supernet/peer"
)

// browser finds Chromium, or skips the test; with $SUPERNET_REQUIRE_BROWSER
// set (as .ci/run sets it) a missing browser fails it instead.
func browser(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("SUPERNET_REQUIRE_BROWSER") != "" {
		t.Fatal("no Chromium to drive: apt-get install chromium")
	}
	t.Skip("no Chromium installed (apt-get install chromium)")
	return ""
}

// TestWebUIInBrowser drives the peer daemon's web page in headless Chromium:
// it searches, starts a download, watches its bar go from downloading to
// done, and finds the file on disk; it sends a file to a user, and opens one
// that arrived in the inbox. With $SUPERNET_SCREENSHOT it saves a
// screenshot there (the README's).
func TestWebUIInBrowser(t *testing.T) {
	exe := browser(t)
	sn := startSupernode(t)
	shareDir := t.TempDir()
	song := filepath.Join(shareDir, "The Beatles - Hey Jude.mp3")
	if err := contenttest.WriteID3v2MP3(song, "Hey Jude", "The Beatles", "Hey Jude", 6<<20, 1); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(song)
	if err != nil {
		t.Fatal(err)
	}
	alice := startPeer(t, sn, "alice", map[string][]byte{"The Beatles - Hey Jude.mp3": data}, func(c *peer.Config) { c.Username = "alice" })
	startPeer(t, sn, "emil", map[string][]byte{"The Beatles - Hey Jude (live).mp3": data[:len(data)-1]})
	downloads := t.TempDir()
	bob := startPeer(t, sn, "bob", nil, func(c *peer.Config) {
		c.Web, c.DownloadDir, c.Username = "127.0.0.1:0", downloads, "bob"
		c.DownloadRate = 3_000_000 // about two seconds, so the bar is seen moving
	})
	findOne(t, bob, "hey jude live", 10*time.Second)

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe), chromedp.NoSandbox,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-quic", true), chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1100, 720))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, raceSlowdown*60*time.Second)
	defer cancelTimeout()

	// The search: both copies, the second from emil.
	err = chromedp.Do(ctx,
		chromedp.Navigate(bob.WebURL()),
		chromedp.WaitReady(chromedp.CSS(`body[data-ready]`)), // app.js has run
		chromedp.SendKeys(chromedp.CSS(`#query`), "hey jude"),
		chromedp.Click(chromedp.CSS(`#search-form button[type=submit]`)),
		chromedp.Poll[chromedp.Void](`document.querySelector("#search-note").textContent.startsWith("2 results")`,
			chromedp.WithPollingTimeout(20*time.Second)),
	)
	if err != nil {
		t.Fatalf("search in the page: %v\n%s", err, pageText(ctx))
	}
	note, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`#search-note`)))
	rows, err2 := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#results tbody tr").length`))
	if err != nil || err2 != nil || rows != 2 || !strings.Contains(note, "2 results from 1 supernode") {
		t.Errorf("search: %d rows, note %q (%v, %v)", rows, note, err, err2)
	}
	// The studio version, then its bar: downloading, then done.
	err = chromedp.Do(ctx,
		chromedp.Click(chromedp.Search(`//tr[td[1][starts-with(normalize-space(.), "The Beatles - Hey Jude.mp3")]]//button`)),
		chromedp.WaitVisible(chromedp.CSS(`#downloads.active`)),
		chromedp.WaitVisible(chromedp.CSS(`.dl[data-state="downloading"]`)),
		chromedp.WaitVisible(chromedp.CSS(`.dl[data-state="done"]`)),
	)
	if err != nil {
		t.Fatalf("download in the page: %v\n%s", err, pageText(ctx))
	}
	figures, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`.dl[data-state="done"]`)))
	if err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(downloads, "The Beatles - Hey Jude.mp3")
	if !strings.Contains(figures, "saved "+want) || !strings.Contains(figures, "6.0 MiB of 6.0 MiB") {
		t.Errorf("the finished download shows %q", figures)
	}
	if got, err := os.ReadFile(want); err != nil || len(got) != len(data) {
		t.Errorf("the download on disk: %d bytes, %v", len(got), err)
	}
	// Send: a file from the browser to alice's inbox.
	for _, d := range []*peer.Daemon{alice, bob} {
		eventually(t, raceSlowdown*10*time.Second, "usernames registered", func() bool {
			u := d.Status().User
			return u != nil && u.Registered
		})
	}
	noteFile := filepath.Join(t.TempDir(), "note.txt")
	if err := os.WriteFile(noteFile, []byte("sent from the page\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err = chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`nav button[data-tab="send"]`)),
		chromedp.SendKeys(chromedp.CSS(`#send-user`), "alice"),
		chromedp.SetUploadFiles(chromedp.CSS(`#send-file`), []string{noteFile}),
		chromedp.Click(chromedp.CSS(`#send-form button[type=submit]`)),
		chromedp.Poll[chromedp.Void](`document.querySelector("#send-note").textContent.startsWith("Sent to alice")`,
			chromedp.WithPollingTimeout(20*time.Second)),
	)
	if err != nil {
		t.Fatalf("send in the page: %v\n%s", err, pageText(ctx))
	}
	if list, err := alice.Inbox(); err != nil || len(list) != 1 || list[0].Name != "note.txt" || list[0].FromUser != "bob" {
		t.Errorf("alice's inbox after the page sent: %+v, %v", list, err)
	}
	// The inbox: what alice sent bob is listed, and opens in the browser.
	letter := filepath.Join(t.TempDir(), "letter.txt")
	if err := os.WriteFile(letter, []byte("dear bob\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer scancel()
	if _, err := alice.Send(sctx, "bob", letter); err != nil {
		t.Fatal(err)
	}
	err = chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`nav button[data-tab="inbox"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#inbox-table tbody tr`)),
	)
	if err != nil {
		t.Fatalf("the inbox in the page: %v\n%s", err, pageText(ctx))
	}
	row, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`#inbox-table tbody tr`)))
	opened, err2 := chromedp.Run(ctx, chromedp.Evaluate[string](
		`fetch(document.querySelector("#inbox-table a").href).then(r => r.text())`, chromedp.EvalAsValue, chromedp.EvalAwaitPromise))
	if err != nil || err2 != nil || !strings.Contains(row, "letter.txt") || !strings.Contains(row, "alice") || opened != "dear bob\n" {
		t.Errorf("inbox row %q, opened %q (%v, %v)", row, opened, err, err2)
	}
	// Delete, through the page's confirm dialog: the file leaves the inbox
	// and the disk.
	dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
	asked := make(chan string, 1)
	go func() {
		for ev, err := range dialogs {
			if err != nil {
				return
			}
			asked <- ev.Message
			if _, err := chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true}); err != nil {
				return
			}
		}
	}()
	f, err := bob.InboxOpen("letter.txt")
	if err != nil {
		t.Fatalf("bob's inbox before Delete: %v", err)
	}
	stored := f.Name()
	f.Close()
	err = chromedp.Do(ctx,
		chromedp.Click(chromedp.Search(`//tr[td[1][normalize-space(.)="letter.txt"]]//button[normalize-space(.)="Delete"]`)),
		chromedp.Poll[chromedp.Void](`document.querySelector("#inbox-table").hidden`, chromedp.WithPollingTimeout(10*time.Second)),
	)
	if err != nil {
		t.Fatalf("delete in the page: %v\n%s", err, pageText(ctx))
	}
	if q := <-asked; !strings.Contains(q, "Delete letter.txt") {
		t.Errorf("the page asked %q", q)
	}
	if list, err := bob.Inbox(); err != nil || len(list) != 0 {
		t.Errorf("bob's inbox after Delete: %+v, %v", list, err)
	}
	if _, err := os.Stat(stored); !os.IsNotExist(err) {
		t.Errorf("the deleted file is still on disk: %v", err)
	}
	// Status: the supernode we are attached to, our NAT, and the links.
	snID := bob.Status().Supernode.PeerID
	err = chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`nav button[data-tab="status"]`)),
		chromedp.Poll[chromedp.Void](`document.querySelector("#links tbody").rows.length > 0`, chromedp.WithPollingTimeout(10*time.Second)),
	)
	if err != nil {
		t.Fatalf("status in the page: %v\n%s", err, pageText(ctx))
	}
	status, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`#status`)))
	if err != nil || !strings.Contains(status, snID[:10]) || !strings.Contains(status, "attached") || !strings.Contains(status, "NAT") ||
		!strings.Contains(status, "direct") {
		t.Errorf("the status tab shows %q (%v); want supernode %s, attached, the NAT and a direct link", status, err, snID[:10])
	}

	// The daemon's metrics, through the page's listener with its token.
	link := bob.WebURL()
	req, _ := http.NewRequest("GET", link[:strings.Index(link, "/?")]+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+link[strings.Index(link, "token=")+len("token="):])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, w := range []string{"supernet_peer_supernodes_attached 1\n", "supernet_peer_downloads 0\n", "go_goroutines "} {
		if !strings.Contains(string(body), w) {
			t.Errorf("/metrics lacks %q:\n%.2000s", w, body)
		}
	}
	if !regexp.MustCompile(`supernet_peer_downloaded_bytes_total [1-9]`).Match(body) {
		t.Errorf("/metrics counts no bytes downloaded:\n%.2000s", body)
	}
	if path := os.Getenv("SUPERNET_SCREENSHOT"); path != "" {
		if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`nav button[data-tab="search"]`))); err != nil {
			t.Fatal(err)
		}
		png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// pageText is what the page shows, for a failure's message.
func pageText(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
	if err != nil {
		return "(page text: " + err.Error() + ")"
	}
	return s
}
