package archtest

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/supernet-p2p/supernet"

// rule forbids an import (or anything under it) to the files it covers.
type rule struct {
	name      string
	forbidden string
	// applies says whether the rule covers a file, by its slash path from
	// the module root.
	applies func(file string) bool
}

func under(p, dir string) bool { return p == dir || strings.HasPrefix(p, dir+"/") }

var rules = []rule{
	{
		// A leaf does not run supernode code: what the two share lives in
		// protocol, index or transport.
		name:      "peer does not import supernode",
		forbidden: module + "/supernode",
		applies:   func(f string) bool { return under(path.Dir(f), "peer") },
	},
	{
		// The transfer engine knows files, blocks and links, not the
		// overlay: the daemon hands it links and sources through its Config.
		name:      "swarm does not import peer",
		forbidden: module + "/peer",
		applies:   func(f string) bool { return under(path.Dir(f), "swarm") },
	},
	{
		name:      "swarm does not import supernode",
		forbidden: module + "/supernode",
		applies:   func(f string) bool { return under(path.Dir(f), "swarm") },
	},
	{
		// QUIC is transport's business; the binaries may set it up, and
		// the comparison's QUIC mode measures it bare.
		name:      "only transport imports quic-go",
		forbidden: "github.com/quic-go/quic-go",
		applies: func(f string) bool {
			d := path.Dir(f)
			return !under(d, "transport") && !under(d, "cmd") && !strings.HasPrefix(f, "compare/quic")
		},
	},
}

// The parts of peer reach each other only through the daemon's wiring in
// peer itself (callbacks in each part's Config), so each can be read and
// tested alone; apitype, the shared vocabulary, is open to all.
func init() {
	for _, part := range []string{"dial", "attach", "localapi", "webui"} {
		rules = append(rules, rule{
			name:      "no part of peer imports peer/" + part + " but peer itself",
			forbidden: module + "/peer/" + part,
			applies: func(f string) bool {
				d := path.Dir(f)
				return under(d, "peer") && d != "peer" && !under(d, "peer/"+part)
			},
		})
	}
}

// known are the violations the tree still has, as "file imports path". The
// list may only shrink: an entry that no longer occurs fails the test, so it
// is struck off when its violation goes (or renamed when its file moves).
var known = []string{}

// TestImportRules parses every non-test Go file of the module and checks
// its imports against the rules. Test files may import what they need to
// stand up the other side.
func TestImportRules(t *testing.T) {
	root := moduleRoot(t)
	var found []string
	files := 0
	// deps are the module's own imports of each package, by package path
	// relative to the module root.
	deps := make(map[string][]string)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); p != root && (n == "testdata" || n == "vendor" || strings.HasPrefix(n, ".") || strings.HasPrefix(n, "_")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		f, err := parser.ParseFile(token.NewFileSet(), p, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		files++
		for _, imp := range f.Imports {
			ip, err := strconv.Unquote(imp.Path.Value)
			if err != nil {
				return err
			}
			for _, r := range rules {
				if under(ip, r.forbidden) && r.applies(rel) {
					found = append(found, rel+" imports "+ip)
				}
			}
			if strings.HasPrefix(ip, module+"/") {
				pkg := path.Dir(rel)
				deps[pkg] = append(deps[pkg], strings.TrimPrefix(ip, module+"/"))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 50 {
		t.Fatalf("only %d Go files under %s: not the module's tree", files, root)
	}
	slices.Sort(found)
	found = slices.Compact(found)
	for _, v := range found {
		if slices.Contains(known, v) {
			t.Logf("known violation, still allowed: %s", v)
			continue
		}
		t.Errorf("%s: breaks %q", v, ruleOf(v))
	}
	for _, v := range known {
		if !slices.Contains(found, v) {
			t.Errorf("%q is listed as a known violation but no longer occurs: strike it off the list", v)
		}
	}
	// Nor through another package: no chain of the module's imports may
	// lead from a leaf's code to supernode (the promoted supernode is wired
	// in by the binary), or from the transfer engine to the daemon.
	for _, c := range []struct{ from, to string }{{"peer", "supernode"}, {"swarm", "supernode"}, {"swarm", "peer"}} {
		for pkg := range deps {
			if !under(pkg, c.from) {
				continue
			}
			if via := reach(deps, pkg, c.to); via != nil {
				t.Errorf("%s reaches %s through %s", pkg, c.to, strings.Join(via, " -> "))
			}
		}
	}
}

// reach is a chain of imports from pkg to target (or a package under it), or
// nil when there is none.
func reach(deps map[string][]string, pkg, target string) []string {
	prev := map[string]string{pkg: ""}
	queue := []string{pkg}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if under(p, target) {
			var chain []string
			for ; p != ""; p = prev[p] {
				chain = append(chain, p)
			}
			slices.Reverse(chain)
			return chain
		}
		for _, d := range deps[p] {
			if _, seen := prev[d]; !seen {
				prev[d] = p
				queue = append(queue, d)
			}
		}
	}
	return nil
}

func ruleOf(v string) string {
	for _, r := range rules {
		if under(v[strings.LastIndex(v, " ")+1:], r.forbidden) {
			return r.name
		}
	}
	return ""
}

// moduleRoot is the directory of the go.mod above the test's directory.
func moduleRoot(t *testing.T) string {
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.HasPrefix(string(b), "module "+module+"\n") {
			return dir
		}
		dir = filepath.Dir(dir)
	}
	t.Fatal("no go.mod of " + module + " above the test")
	return ""
}

// TestRulesCatch feeds the rules imports they must refuse and allow, so a
// rule that no longer matches anything fails here rather than passing
// silently above.
func TestRulesCatch(t *testing.T) {
	broken := func(file, imp string) bool {
		for _, r := range rules {
			if under(imp, r.forbidden) && r.applies(file) {
				return true
			}
		}
		return false
	}
	for _, c := range []struct {
		file, imp string
		want      bool
	}{
		{"peer/daemon.go", module + "/supernode", true},
		{"peer/attach/attachment.go", module + "/supernode", true},
		{"peer/attach/attachment.go", module + "/peer/dial", true},
		{"peer/daemon.go", module + "/peer/dial", false},
		{"peer/localapi/server.go", module + "/peer/apitype", false},
		{"swarm/swarm.go", module + "/peer/apitype", true},
		{"swarm/swarm.go", module + "/supernode", true},
		{"swarm/swarm.go", "github.com/quic-go/quic-go", true},
		{"transport/link.go", "github.com/quic-go/quic-go", false},
		{"cmd/supernode/main.go", "github.com/quic-go/quic-go", false},
		{"compare/quicnet.go", "github.com/quic-go/quic-go", false},
		{"compare/overlay.go", "github.com/quic-go/quic-go", true},
		{"internal/peerlead/peerlead.go", module + "/supernode", false},
	} {
		if got := broken(c.file, c.imp); got != c.want {
			t.Errorf("%s importing %s: broken %v, want %v", c.file, c.imp, got, c.want)
		}
	}
	deps := map[string][]string{"swarm": {"content"}, "content": {"peer/apitype"}}
	if via := reach(deps, "swarm", "peer"); strings.Join(via, " ") != "swarm content peer/apitype" {
		t.Errorf("reach through content: %v", via)
	}
	if via := reach(deps, "content", "supernode"); via != nil {
		t.Errorf("reach found a chain that is not there: %v", via)
	}
}
