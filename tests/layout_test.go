package tests

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"path"
	"slices"
	"strings"
	"testing"
)

// module is the project's module path.
const module = "mailfountain.dev/mailfountain"

// TestImportRules checks the rules of the README's map of the code: data
// flows one way (files → schema → reconcilers → what the servers read),
// reconcilers meet only through the engine, and the servers never read the
// document themselves.
func TestImportRules(t *testing.T) {
	imports, built := projectImports(t)
	if len(imports) < 10 {
		t.Fatalf("go list found %d packages; is the module root the parent of tests/?", len(imports))
	}
	for pkg, deps := range imports {
		for _, dep := range deps {
			if why := importRule(pkg, dep); why != "" {
				t.Errorf("%s imports %s: %s", pkg, dep, why)
			}
		}
	}
	for pkg, deps := range built {
		for _, dep := range deps {
			if why := testSupportRule(pkg, dep); why != "" {
				t.Errorf("%s imports %s outside its tests: %s", pkg, dep, why)
			}
		}
	}
}

// testSupport are the packages for tests only (like net/http/httptest).
var testSupport = []string{"hw/hwtest", "runtime/dnsd/dnstest", "runtime/testenv", "runtime/metrics/metricstest", "runtime/dsn/dsntest", "schema/schematest", "runtime/tlscert/certtest"}

// testSupportRule says why pkg, without its tests, may not import dep (""
// if it may): a package for tests serves the _test.go files, tests/ and
// bench/, never the box.
func testSupportRule(pkg, dep string) string {
	if strings.HasPrefix(pkg, "tests") || strings.HasPrefix(pkg, "bench/") || slices.Contains(testSupport, pkg) {
		return ""
	}
	if slices.Contains(testSupport, dep) {
		return "a package for tests is imported only by tests"
	}
	return ""
}

func TestTestSupportRule(t *testing.T) {
	for _, c := range []struct {
		pkg, dep string
		refused  bool
	}{
		{"runtime/smtpout", "runtime/dnsd/dnstest", true},
		{"cmd/mfapply", "runtime/testenv", true},
		{"runtime/smtpd", "runtime/metrics/metricstest", true},
		{"runtime/smtpout", "runtime/tlscert/certtest", true},
		{"tests", "runtime/dnsd/dnstest", false},
		{"bench/dns/serve", "runtime/testenv", false},
		{"tests", "runtime/tlscert/certtest", false},
		{"runtime/smtpout", "runtime/mailauth", false},
	} {
		if got := testSupportRule(c.pkg, c.dep) != ""; got != c.refused {
			t.Errorf("testSupportRule(%s, %s) refused = %v, want %v", c.pkg, c.dep, got, c.refused)
		}
	}
}

func TestImportRuleTable(t *testing.T) {
	// The rules themselves: a rule that allows everything would make
	// TestImportRules pass whatever the code does.
	for _, c := range []struct {
		pkg, dep string
		refused  bool
	}{
		{"reconcilers/accounts", "reconcilers/mail", true},
		{"reconcilers/accounts", "reconcilers", false},
		{"reconcilers/accounts", "runtime/store", false},
		{"runtime/applier", "reconcilers/accounts", true},
		{"runtime/applier", "reconcilers", false},
		{"runtime/smtpd", "schema", true},
		{"runtime/imapd", "reconcilers", true},
		{"runtime/pop3d", "runtime/applier", true},
		{"runtime/smtpd", "runtime/maildir", false},
		{"schema", "runtime/store", true},
		{"schema", "hw", false},
		{"runtime/daemon", "cmd/mfapply", true},
		{"runtime/daemon", "bench/gendoc", true},
		{"runtime/daemon", "schema", false},
		{"runtime/daemon", "reconcilers/firewall", true},
		{"bench/firewall/drive", "reconcilers/firewall", false},
	} {
		if got := importRule(c.pkg, c.dep) != ""; got != c.refused {
			t.Errorf("importRule(%s, %s) refused = %v, want %v", c.pkg, c.dep, got, c.refused)
		}
	}
}

// servers are the packages that serve clients; they read what the
// reconcilers converged (store, mailconf, maildir), never the document.
var servers = []string{"runtime/smtpd", "runtime/imapd", "runtime/pop3d", "runtime/dnsd", "runtime/dhcpd", "runtime/web"}

// importRule says why pkg may not import dep ("" if it may); both are
// paths inside the module.
func importRule(pkg, dep string) string {
	underReconcilers := func(p string) bool { return strings.HasPrefix(p, "reconcilers/") }
	switch {
	case strings.HasPrefix(dep, "cmd/"):
		return "commands are programs, not libraries"
	case strings.HasPrefix(dep, "bench/") && !strings.HasPrefix(pkg, "bench/"):
		return "benchmarks are not part of the box"
	case pkg == "schema" || strings.HasPrefix(pkg, "schema/"):
		// The document's package sits under everything else.
		if dep != "hw" && dep != "runtime/auth" && !strings.HasPrefix(dep, "schema") {
			return "schema may import only hw and runtime/auth (password hashes)"
		}
	case underReconcilers(pkg) && underReconcilers(dep) && top(pkg) != top(dep) && !isShared(dep):
		if strings.HasPrefix(pkg, "reconcilers/registry") {
			return ""
		}
		return "a reconciler never imports another: they share facts through the engine"
	case !underReconcilers(pkg) && underReconcilers(dep) && !isShared(dep) && !strings.HasPrefix(dep, "reconcilers/registry") &&
		!strings.HasPrefix(pkg, "bench/"): // a benchmark drives one reconciler alone
		return "only the registry lists individual reconcilers"
	}
	for _, s := range servers {
		if pkg == s || strings.HasPrefix(pkg, s+"/") {
			if dep == "schema" || dep == "reconcilers" || underReconcilers(dep) || dep == "runtime/applier" || dep == "runtime/daemon" {
				return "servers read what the reconcilers converged, never the document"
			}
		}
	}
	return ""
}

// top is the reconciler a package under reconcilers/ belongs to.
func top(p string) string {
	parts := strings.SplitN(p, "/", 3)
	if len(parts) < 2 {
		return p
	}
	return parts[1]
}

// isShared reports whether dep is a package under reconcilers/ that every
// reconciler may import: the contract itself and its shared vocabulary.
func isShared(dep string) bool {
	return dep == "reconcilers" || dep == "reconcilers/facts"
}

// projectImports lists, for every package of the module (tests included),
// the module's packages it imports, both relative to the module root; and
// built, the same without the imports of its tests.
func projectImports(t *testing.T) (imports, built map[string][]string) {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = "/usr/local/go/bin/go"
	}
	cmd := exec.Command(goBin, "list", "-json=ImportPath,Imports,TestImports", "./...")
	cmd.Dir = ".."
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.Bytes())
	}
	m := map[string][]string{}
	built = map[string][]string{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p struct {
			ImportPath           string
			Imports, TestImports []string
		}
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decode go list: %v", err)
		}
		rel, ok := strings.CutPrefix(p.ImportPath, module+"/")
		if !ok {
			continue
		}
		for i, imp := range append(p.Imports, p.TestImports...) {
			if dep, ok := strings.CutPrefix(imp, module+"/"); ok && path.Clean(dep) != rel {
				m[rel] = append(m[rel], dep)
				if i < len(p.Imports) {
					built[rel] = append(built[rel], dep)
				}
			}
		}
		if _, ok := m[rel]; !ok {
			m[rel] = nil
		}
	}
	return m, built
}
