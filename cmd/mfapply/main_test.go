package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"mailfountain.dev/mailfountain/runtime/applier"
	"mailfountain.dev/mailfountain/runtime/auth"
	"mailfountain.dev/mailfountain/runtime/control"

	"mailfountain.dev/mailfountain/runtime/testenv"
)

// mfapplyBin is the command under test, built once by TestMain.
var mfapplyBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "mfapply-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	mfapplyBin = filepath.Join(dir, "mfapply")
	build := exec.Command("go", "build", "-o", mfapplyBin, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "build mfapply: %v\n", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const docV1 = `system: {model: M500}
network: {mode: router, wan: {method: dhcp}}
smtp: {mode: direct}
domains:
  - name: a.example
    accounts:
      - {id: bob, name: Bob}
`

// docV2 renames bob and adds carol.
const docV2 = `system: {model: M500}
network: {mode: router, wan: {method: dhcp}}
smtp: {mode: direct}
domains:
  - name: a.example
    accounts:
      - {id: bob, name: Robert}
      - {id: carol, name: Carol}
`

// docInvalid has two errors: an unknown model (line 3) and an unknown
// network mode (line 4).
const docInvalid = `system:
  hostname: mail
  model: Z900
network: {mode: bridge, wan: {method: dhcp}}
smtp: {mode: direct}
`

// result is one run of mfapply.
type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// env is a data directory and a working directory for state files.
type env struct {
	t    *testing.T
	data string
	work string
}

func newEnv(t *testing.T) *env {
	return &env{t: t, data: filepath.Join(t.TempDir(), "data"), work: t.TempDir()}
}

// file writes a state file (0600, as a file with secrets must be).
func (e *env) file(name, content string) string {
	e.t.Helper()
	p := filepath.Join(e.work, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		e.t.Fatal(err)
	}
	return p
}

// run runs mfapply with --data set to the env's data directory.
func (e *env) run(stdin string, args ...string) result {
	e.t.Helper()
	return runMfapply(e.t, []string{"MAILFOUNTAIN_DATA=" + e.data}, stdin, args...)
}

func runMfapply(t *testing.T, extraEnv []string, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, mfapplyBin, args...)
	cmd.Env = append(os.Environ(), extraEnv...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("run mfapply %v: %v", args, err)
	}
	return r
}

func (e *env) expect(r result, code int, contains ...string) {
	e.t.Helper()
	if r.code != code {
		e.t.Fatalf("want exit %d, got %s", code, r)
	}
	for _, s := range contains {
		if !strings.Contains(r.stdout+r.stderr, s) {
			e.t.Fatalf("output lacks %q: %s", s, r)
		}
	}
}

func decodeJSON(t *testing.T, r result, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(r.stdout), v); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, r)
	}
}

func TestValidate(t *testing.T) {
	e := newEnv(t)
	good := e.file("good.yaml", docV1)
	bad := e.file("bad.yaml", docInvalid)

	e.expect(e.run("", "validate", "-f", good), 0, "valid: 1 domain, 3 accounts")

	r := e.run("", "validate", "-f", bad)
	e.expect(r, 1)
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(bad) + `:3:\d+: system\.model: `),
		regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(bad) + `:4:\d+: network\.mode: `),
	} {
		if !want.MatchString(r.stderr) {
			t.Errorf("stderr lacks %v: %s", want, r)
		}
	}

	var ok struct {
		Valid    bool `json:"valid"`
		Domains  int  `json:"domains"`
		Accounts int  `json:"accounts"`
	}
	r = e.run("", "validate", "-f", good, "--json")
	e.expect(r, 0)
	decodeJSON(t, r, &ok)
	if !ok.Valid || ok.Domains != 1 || ok.Accounts != 3 {
		t.Fatalf("validate --json: %+v", ok)
	}

	var ko struct {
		Valid  bool   `json:"valid"`
		Error  string `json:"error"`
		Errors []struct {
			File string `json:"file"`
			Line int    `json:"line"`
			Path string `json:"path"`
		} `json:"errors"`
	}
	r = e.run("", "--json", "validate", "-f", bad)
	e.expect(r, 1)
	decodeJSON(t, r, &ko)
	if ko.Valid || len(ko.Errors) < 2 || ko.Errors[0].File != bad || ko.Errors[0].Line != 3 {
		t.Fatalf("validate --json of an invalid document: %+v", ko)
	}

	r = e.run("", "validate", "-f", filepath.Join(e.work, "missing.yaml"), "--json")
	e.expect(r, 1)
	decodeJSON(t, r, &ko)
	if ko.Valid || ko.Error == "" {
		t.Fatalf("validate --json of a missing file: %+v", ko)
	}
	// validate needs no data directory.
	if _, err := os.Stat(e.data); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("validate created the data directory: %v", err)
	}
}

func TestPlanApplyHistory(t *testing.T) {
	e := newEnv(t)
	v1 := e.file("state.yaml", docV1)

	r := e.run("", "plan", "-f", v1)
	e.expect(r, 2, "accounts:", "+ account bob@a.example", "to add")
	if strings.Contains(r.stdout, "\x1b[") {
		t.Errorf("colour on a pipe: %q", r.stdout)
	}

	var pj struct {
		Changes    bool `json:"changes"`
		NewVersion bool `json:"new_version"`
		Steps      []struct {
			Reconciler string `json:"reconciler"`
			Changes    []struct {
				Op       string `json:"op"`
				Resource string `json:"resource"`
			} `json:"changes"`
		} `json:"steps"`
	}
	r = e.run("", "plan", "-f", v1, "--json")
	e.expect(r, 2)
	decodeJSON(t, r, &pj)
	if !pj.Changes || !pj.NewVersion || len(pj.Steps) == 0 || pj.Steps[0].Reconciler != "accounts" || len(pj.Steps[0].Changes) == 0 {
		t.Fatalf("plan --json: %+v", pj)
	}

	// No terminal and no --yes: refused, nothing applied.
	e.expect(e.run("y\n", "apply", "-f", v1), 1, "use --yes")
	e.expect(e.run("", "history"), 0, "no versions")

	e.expect(e.run("", "apply", "-f", v1, "--yes", "-m", "first"), 0, "+ account bob@a.example", "accounts: changed", "applied: version 1")
	r = e.run("", "apply", "-f", v1, "--yes")
	e.expect(r, 0, "no changes")
	if strings.Contains(r.stdout, "applied: version") {
		t.Fatalf("second apply recorded a version: %s", r)
	}
	e.expect(e.run("", "plan", "-f", v1), 0, "no changes")

	v2 := e.file("state.yaml", docV2)
	e.expect(e.run("", "apply", "-y", "-f", v2, "-m", "rename bob"), 0, "~ account bob@a.example (name)", "+ account carol@a.example", "applied: version 2")

	var hist []struct {
		N         int       `json:"n"`
		Created   time.Time `json:"created"`
		Message   string    `json:"message"`
		Origin    string    `json:"origin"`
		StateHash string    `json:"state_hash"`
	}
	r = e.run("", "history", "--json")
	e.expect(r, 0)
	decodeJSON(t, r, &hist)
	if len(hist) != 2 || hist[0].Message != "first" || hist[1].Message != "rename bob" || hist[1].Origin != "mfapply" || hist[1].Created.IsZero() || hist[0].StateHash == hist[1].StateHash {
		t.Fatalf("history --json: %+v", hist)
	}
	e.expect(e.run("", "history"), 0, "VERSION", "rename bob")

	r = e.run("", "show", "1")
	e.expect(r, 0)
	if r.stdout != docV1 {
		t.Fatalf("show 1 is not the applied file:\n%s", r)
	}
	var st struct {
		Domains []struct {
			Name     string `json:"name"`
			Accounts []struct {
				ID   string `json:"id"`
				Name string `json:"name"`
			} `json:"accounts"`
		} `json:"domains"`
	}
	r = e.run("", "show", "2", "--json")
	e.expect(r, 0)
	decodeJSON(t, r, &st)
	if len(st.Domains) != 1 || len(st.Domains[0].Accounts) != 4 {
		t.Fatalf("show 2 --json: %+v", st)
	}
	e.expect(e.run("", "show", "9"), 1, "not found")
	var je struct {
		Error string `json:"error"`
	}
	r = e.run("", "show", "9", "--json")
	e.expect(r, 1)
	decodeJSON(t, r, &je)
	if je.Error == "" {
		t.Fatalf("show 9 --json: %s", r)
	}

	r = e.run("", "diff", "1", "2")
	e.expect(r, 0, "~ account bob@a.example (name)", "+ account carol@a.example")
	r2 := e.run("", "diff", "1")
	if r2.stdout != r.stdout {
		t.Fatalf("diff 1 (latest) differs from diff 1 2:\n%s\n%s", r2, r)
	}
	var dj []struct {
		Op      string   `json:"op"`
		Kind    string   `json:"kind"`
		Name    string   `json:"name"`
		Changed []string `json:"changed"`
	}
	r = e.run("", "diff", "--json", "1", "2")
	e.expect(r, 0)
	decodeJSON(t, r, &dj)
	found := false
	for _, c := range dj {
		if c.Op == "~" && c.Kind == "account" && c.Name == "bob@a.example" && len(c.Changed) == 1 && c.Changed[0] == "name" {
			found = true
		}
	}
	if !found {
		t.Fatalf("diff --json lacks the renamed account: %+v", dj)
	}

	// Roll back to version 1: a new version, whose state is version 1's.
	e.expect(e.run("", "rollback", "1"), 1, "use --yes")
	e.expect(e.run("", "rollback", "1", "--yes"), 0, "- account carol@a.example", "applied: version 3")
	e.expect(e.run("", "diff", "1", "3"), 0, "no differences")
	r = e.run("", "history", "--json")
	decodeJSON(t, r, &hist)
	if len(hist) != 3 || hist[2].Origin != "rollback" || hist[2].Message != "rollback to version 1" || hist[2].StateHash != hist[0].StateHash {
		t.Fatalf("history after rollback: %+v", hist)
	}
	e.expect(e.run("", "rollback", "3", "--yes"), 0, "no changes")
}

func TestInvalidApplyChangesNothing(t *testing.T) {
	e := newEnv(t)
	e.expect(e.run("", "apply", "-f", e.file("ok.yaml", docV1), "--yes"), 0, "applied: version 1")
	bad := e.file("bad.yaml", docInvalid)
	e.expect(e.run("", "plan", "-f", bad), 1, bad+":3:")
	e.expect(e.run("", "apply", "-f", bad, "--yes"), 1, bad+":3:")
	var hist []json.RawMessage
	r := e.run("", "history", "--json")
	decodeJSON(t, r, &hist)
	if len(hist) != 1 {
		t.Fatalf("an invalid apply recorded a version: %s", r)
	}
}

func TestSavedPlan(t *testing.T) {
	e := newEnv(t)
	v1 := e.file("v1.yaml", docV1)
	planFile := filepath.Join(e.work, "v1.plan")
	e.expect(e.run("", "plan", "-f", v1, "-out", planFile), 2, "plan saved to "+planFile)
	e.expect(e.run("", "apply", planFile, "--yes"), 0, "applied: version 1")

	// A plan saved, then the live state moves: the saved plan is refused.
	v2 := e.file("v2.yaml", docV2)
	stale := filepath.Join(e.work, "v2.plan")
	e.expect(e.run("", "plan", "-f", v2, "-out", stale), 2)
	e.expect(e.run("", "apply", "-f", e.file("v3.yaml", strings.Replace(docV1, "Bob", "Bobby", 1)), "--yes"), 0, "applied: version 2")
	r := e.run("", "apply", stale, "--yes")
	e.expect(r, 1, "refusing to apply the saved plan", "plan again")
	if strings.Contains(r.stdout, "applied") {
		t.Fatalf("stale plan applied: %s", r)
	}
	e.expect(e.run("", "history"), 0)
	var hist []json.RawMessage
	decodeJSON(t, e.run("", "history", "--json"), &hist)
	if len(hist) != 2 {
		t.Fatalf("history after a refused plan: %d versions", len(hist))
	}

	// Usage errors.
	e.expect(e.run("", "apply"), 1, "missing -f PATH or a saved plan FILE")
	e.expect(e.run("", "apply", "-f", v1, stale), 1, "not both")
}

func TestPasswd(t *testing.T) {
	e := newEnv(t)
	r := e.run("s3cret-pw\n", "passwd")
	e.expect(r, 0)
	hash := strings.TrimSpace(r.stdout)
	if !strings.HasPrefix(hash, "$argon2id$") || !auth.CheckPassword(hash, "s3cret-pw") || auth.CheckPassword(hash, "s3cret-pw\n") {
		t.Fatalf("passwd printed %q", hash)
	}
	// Without a final newline, and with a CRLF.
	for _, in := range []string{"abcdef", "abcdef\r\n"} {
		r := e.run(in, "passwd")
		e.expect(r, 0)
		if !auth.CheckPassword(strings.TrimSpace(r.stdout), "abcdef") {
			t.Fatalf("passwd of %q: %s", in, r)
		}
	}
	e.expect(e.run("abc\n", "passwd"), 1, "too short")
	e.expect(e.run("", "passwd"), 1, "no password")
}

func TestBackup(t *testing.T) {
	e := newEnv(t)
	e.expect(e.run("", "apply", "-f", e.file("v1.yaml", docV1), "--yes"), 0, "version 1")
	e.expect(e.run("", "apply", "-f", e.file("v2.yaml", docV2), "--yes"), 0, "version 2")
	archive := filepath.Join(e.work, "backup.tar.gz")
	e.expect(e.run("", "backup", "export", archive), 0, "exported")
	if fi, err := os.Stat(archive); err != nil || fi.Size() == 0 {
		t.Fatalf("archive: %v, %v", fi, err)
	}

	other := newEnv(t)
	other.expect(other.run("", "backup", "import", archive), 0, "imported")
	var a, b []json.RawMessage
	decodeJSON(t, e.run("", "history", "--json"), &a)
	decodeJSON(t, other.run("", "history", "--json"), &b)
	if len(b) != 2 || string(a[1]) != string(b[1]) {
		t.Fatalf("history after import:\n%s\nwant:\n%s", b, a)
	}
	other.expect(other.run("", "show", "2"), 0, "carol")

	other.expect(other.run("", "backup", "import", e.file("junk", "junk")), 1)
	other.expect(other.run("", "backup", "export"), 1, "missing argument")
	other.expect(other.run("", "backup", "copy", "x"), 1, "unknown backup command")
}

func TestUsage(t *testing.T) {
	e := newEnv(t)
	r := e.run("", "help")
	e.expect(r, 0, "Usage: mfapply [--data DIR] COMMAND", "validate -f PATH", "backup export FILE", "passwd")
	e.expect(e.run("", "--help"), 0, "Usage: mfapply")
	e.expect(e.run("", "help", "plan"), 0, "Exit status: 0 no changes; 2 changes")
	e.expect(e.run("", "plan", "-h"), 0, "-out FILE")
	e.expect(e.run(""), 1, "Usage: mfapply")

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"validate"}, "missing -f PATH"},
		{[]string{"plan", "--bogus"}, "flag provided but not defined"},
		{[]string{"show"}, "missing argument"},
		{[]string{"show", "x"}, "want a version number"},
		{[]string{"diff", "1", "2", "3"}, "unexpected argument"},
		{[]string{"archive", "purge", "x", "--json"}, "--json is for read commands"},
		{[]string{"archive", "purge"}, "needs archive NAMEs or --older-than AGE"},
		{[]string{"archive", "purge", "--older-than", "90 days"}, "want an age like 90d"},
		{[]string{"archive", "frob"}, `unknown archive command "frob"`},
	} {
		r := e.run("", tc.args...)
		if r.code != 1 || !strings.Contains(r.stderr, tc.want) || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
			t.Errorf("mfapply %v: want exit 1 and one line with %q, got %s", tc.args, tc.want, r)
		}
	}
	// Commands that read the data directory do not create it.
	e.expect(e.run("", "history"), 1, "no data directory")
	if _, err := os.Stat(e.data); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("history created the data directory: %v", err)
	}
}

func TestDataDirectory(t *testing.T) {
	e := newEnv(t)
	state := e.file("v1.yaml", docV1)
	flagDir := filepath.Join(t.TempDir(), "flag")
	// The flag wins over the environment, before or after the command.
	e.expect(e.run("", "--data", flagDir, "apply", "-f", state, "--yes"), 0, "version 1")
	e.expect(e.run("", "history", "--data", flagDir), 0, "VERSION")
	e.expect(e.run("", "history"), 1, "no data directory "+e.data)
	// The environment is used without the flag.
	e.expect(e.run("", "apply", "-f", state, "--yes"), 0, "version 1")
	if _, err := os.Stat(filepath.Join(e.data, "mailfountain.db")); err != nil {
		t.Fatalf("store in $MAILFOUNTAIN_DATA: %v", err)
	}
}

// serveDaemon serves the data directory's applier on its control socket,
// as mailfountaind does, until the test ends; the caller gives the server
// the daemon's status or queue if the test needs them.
func serveDaemon(t *testing.T, e *env, logger *slog.Logger) (*applier.Applier, *control.Server) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	a, err := applier.Open(ctx, e.data, logger)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	srv, err := control.Listen(e.data, a, logger)
	if err != nil {
		cancel()
		a.Close()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		a.Close()
	})
	return a, srv
}

// TestThroughDaemon serves the data directory's applier on its control
// socket, as mailfountaind does, and checks that mfapply goes through it:
// the daemon's log sees each request, and the results are the daemon's.
func TestThroughDaemon(t *testing.T) {
	e := newEnv(t)
	logs := &testenv.Buffer{}
	a, _ := serveDaemon(t, e, slog.New(slog.NewTextHandler(logs, nil)))
	ctx := t.Context()

	requests := func(path string) int {
		return strings.Count(logs.String(), "path="+path+" ")
	}
	v1 := e.file("v1.yaml", docV1)
	e.expect(e.run("", "plan", "-f", v1), 2, "+ account bob@a.example")
	if requests("/v1/plan") != 1 {
		t.Fatalf("the daemon did not see the plan:\n%s", logs)
	}
	e.expect(e.run("", "apply", "-f", v1, "--yes", "-m", "via daemon"), 0, "applied: version 1")
	if requests("/v1/apply") != 1 {
		t.Fatalf("the daemon did not see the apply:\n%s", logs)
	}
	if vs, err := a.History(ctx); err != nil || len(vs) != 1 || vs[0].Message != "via daemon" {
		t.Fatalf("the daemon's history: %+v, %v", vs, err)
	}
	e.expect(e.run("", "apply", "-f", v1, "--yes"), 0, "no changes")

	// Saved plans, encoded and checked by the daemon.
	v2 := e.file("v2.yaml", docV2)
	planFile := filepath.Join(e.work, "v2.plan")
	e.expect(e.run("", "plan", "-f", v2, "-out", planFile), 2)
	e.expect(e.run("", "apply", "-f", e.file("v3.yaml", strings.Replace(docV1, "Bob", "Bobby", 1)), "--yes"), 0, "applied: version 2")
	e.expect(e.run("", "apply", planFile, "--yes"), 1, "refusing to apply the saved plan")
	e.expect(e.run("", "plan", "-f", v2, "-out", planFile), 2)
	e.expect(e.run("", "apply", planFile, "--yes"), 0, "applied: version 3")

	e.expect(e.run("", "history"), 0, "via daemon")
	e.expect(e.run("", "show", "1"), 0, "name: a.example")
	e.expect(e.run("", "diff", "2", "3"), 0, "+ account carol@a.example")
	e.expect(e.run("", "rollback", "1", "--yes"), 0, "applied: version 4")
	archive := filepath.Join(e.work, "b.tar.gz")
	e.expect(e.run("", "backup", "export", archive), 0, "exported")
	e.expect(e.run("", "backup", "import", archive), 0, "imported")
	for _, p := range []string{"/v1/history", "/v1/show", "/v1/diff", "/v1/rollback-plan", "/v1/export", "/v1/import", "/v1/plan-file/encode", "/v1/plan-file/decode", "/v1/verify"} {
		if requests(p) == 0 {
			t.Errorf("the daemon did not see %s", p)
		}
	}
	bad := e.file("bad.yaml", docInvalid)
	e.expect(e.run("", "plan", "-f", bad), 1, bad+":3:")
}
