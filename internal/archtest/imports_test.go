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
	for _, part := range []string{"dial", "attach", "swarm", "localapi"} {
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
	// Nor through another package: a peer package must not reach supernode
	// by any chain of the module's imports (the promoted supernode is
	// wired in by the binary).
	for pkg := range deps {
		if !under(pkg, "peer") {
			continue
		}
		if via := reach(deps, pkg, "supernode"); via != nil {
			t.Errorf("%s reaches supernode through %s: breaks %q", pkg, strings.Join(via, " -> "), rules[0].name)
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
