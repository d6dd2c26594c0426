// Package tests holds end-to-end tests: the real binaries, run as
// processes on real data directories, driven like an admin would.
package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"mailfountain.dev/mailfountain/runtime/testenv"
)

// commands are the binaries of ./cmd/..., built once, by the first test
// that needs them, into a directory TestMain removes.
var commands struct {
	dir  string
	once sync.Once
	err  error
}

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "mailfountain-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "tests:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	commands.dir = dir
	return m.Run()
}

// buildCommands builds ./cmd/... into commands.dir. It runs inside a test,
// not before m.Run: only then are the files it stats recorded for the
// test cache (see statSources).
func buildCommands() error {
	// The module root is the parent of this package's directory.
	if err := statSources(".."); err != nil {
		return err
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = "/usr/local/go/bin/go"
	}
	cmd := exec.Command(goBin, "build", "-o", commands.dir+"/", "./cmd/...")
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/...: %w\n%s", err, out)
	}
	return nil
}

// statSources stats every source file of the module. The binaries are
// built by a child go command whose inputs go test cannot see; files this
// process stats are part of the test cache key, so an edit anywhere in the
// module runs these tests again instead of reporting a cached result.
func statSources(root string) error {
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path != root && (strings.HasPrefix(name, ".") || name == "bin" || name == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(name, ".go") || strings.HasSuffix(name, ".cue") || name == "go.mod" || name == "go.sum" {
			_, err = os.Stat(path)
		}
		return err
	})
}

// bin is the path of a built command.
func bin(t *testing.T, name string) string {
	t.Helper()
	commands.once.Do(func() { commands.err = buildCommands() })
	if commands.err != nil {
		t.Fatal(commands.err)
	}
	return filepath.Join(commands.dir, name)
}

// daemonProc is a mailfountaind process run by a test.
type daemonProc struct {
	cmd    *exec.Cmd
	stderr *testenv.Buffer
	exited chan struct{}
	err    error // Wait's result, once exited is closed
}

// serverFlags are mailfountaind's listen address flags.
var serverFlags = []string{"smtp", "submission", "submissions", "pop3", "pop3s", "imap", "imaps", "dns", "dhcp"}

// startDaemonProc runs mailfountaind with args; the servers args do not
// name are off, so that tests never take the standard ports.
func startDaemonProc(t *testing.T, args ...string) *daemonProc {
	t.Helper()
	return startDaemonProcEnv(t, nil, args...)
}

// startDaemonProcEnv is startDaemonProc with more environment variables.
func startDaemonProcEnv(t *testing.T, env []string, args ...string) *daemonProc {
	t.Helper()
	return startDaemonProcIn(t, nil, env, args...)
}

// startDaemonProcIn is startDaemonProcEnv run by the command wrap (`ip
// netns exec NS`), which must exec mailfountaind in its place.
func startDaemonProcIn(t *testing.T, wrap, env []string, args ...string) *daemonProc {
	t.Helper()
	for _, f := range serverFlags {
		named := false
		for _, a := range args {
			if a == "--"+f || strings.HasPrefix(a, "--"+f+"=") {
				named = true
			}
		}
		if !named {
			args = append(args, "--"+f, "off")
		}
	}
	if !slices.ContainsFunc(args, func(a string) bool { return a == "--resolver" || strings.HasPrefix(a, "--resolver=") }) {
		// Mail a test sends outside must never reach the Internet: the
		// resolver is a socket that answers nothing, so that it waits
		// in the queue.
		args = append(args, "--resolver", silentResolver(t))
	}
	p := &daemonProc{stderr: &testenv.Buffer{}, exited: make(chan struct{})}
	argv := append(slices.Clone(wrap), bin(t, "mailfountaind"))
	p.cmd = exec.Command(argv[0], append(argv[1:], args...)...)
	p.cmd.Stderr = p.stderr
	p.cmd.Env = append(append(os.Environ(), "MAILFOUNTAIN_DATA="), env...)
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.exited
		if t.Failed() {
			t.Logf("mailfountaind log:\n%s", p.stderr)
		}
	})
	return p
}

// silentResolver is the address of a UDP socket, open until the test
// ends, that reads nothing: DNS queries sent there time out.
func silentResolver(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc.LocalAddr().String()
}

func (p *daemonProc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// waitExit waits at most d for the process to exit and returns its code.
func (p *daemonProc) waitExit(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(d):
		t.Fatalf("mailfountaind still running %s later", d)
	}
	if p.err == nil {
		return 0
	}
	var ee *exec.ExitError
	if !errors.As(p.err, &ee) {
		t.Fatalf("mailfountaind: %v", p.err)
	}
	return ee.ExitCode()
}

// waitFor polls cond until it returns nil, failing the test with its last
// error after 15 s.
func waitFor(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %v", what, err)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

type historyEntry struct {
	N      int    `json:"n"`
	Origin string `json:"origin"`
}

// history runs `mfapply --data DIR history --json`; with a daemon running
// on DIR it goes through the daemon's control socket.
func history(t *testing.T, dataDir string) ([]historyEntry, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin(t, "mfapply"), "--data", dataDir, "history", "--json")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("mfapply history --json: %w\n%s", err, stderr.String())
	}
	var h []historyEntry
	if err := json.Unmarshal(out, &h); err != nil {
		return nil, fmt.Errorf("mfapply history --json: %w\n%s", err, out)
	}
	return h, nil
}

// waitVersions waits until the history holds n versions and fails if it
// holds more. Until then mfapply may fail: the daemon may not have
// created the data directory yet.
func waitVersions(t *testing.T, dataDir string, n int) []historyEntry {
	t.Helper()
	waitFor(t, fmt.Sprintf("version %d", n), func() error {
		h, err := history(t, dataDir)
		if err == nil && len(h) < n {
			err = fmt.Errorf("%d versions", len(h))
		}
		return err
	})
	h, err := history(t, dataDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != n {
		t.Fatalf("%d versions, want %d", len(h), n)
	}
	return h
}

func stateDoc(accounts ...string) string {
	var b strings.Builder
	b.WriteString("system: {model: M500}\nnetwork: {mode: router, wan: {method: dhcp}}\nsmtp: {mode: direct}\n")
	b.WriteString("domains:\n  - name: a.example\n    accounts:\n")
	for _, a := range accounts {
		fmt.Fprintf(&b, "      - id: %s\n", a)
	}
	return b.String()
}

// saveByRename saves like editors that write a new file and rename it
// over the old one.
func saveByRename(t *testing.T, path, data string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".swp")
	if err := os.WriteFile(tmp, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestDaemonProcess(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	state := filepath.Join(dir, "state.yaml")
	if err := os.WriteFile(state, []byte(stateDoc("bob")), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDaemonProc(t, "--data", data, "-f", state, "--log-level", "debug")

	// Applied on start.
	h := waitVersions(t, data, 1)
	if h[0].Origin != "daemon" {
		t.Errorf("version 1 origin %q, want daemon", h[0].Origin)
	}

	// An edit saved by rename is a new version.
	saveByRename(t, state, stateDoc("bob", "carol"))
	waitVersions(t, data, 2)

	// An invalid edit: logged with file:line, the daemon runs on, the
	// last version stays.
	saveByRename(t, state, stateDoc("bob", "carol", "Dé jà"))
	want := state + ":9:" // the third account
	waitFor(t, "the invalid edit logged at "+want, func() error {
		if !strings.Contains(d.stderr.String(), want) {
			return errors.New("not in the log yet")
		}
		return nil
	})
	if !d.running() {
		t.Fatal("mailfountaind exited after an invalid edit")
	}
	waitVersions(t, data, 2)

	// SIGHUP re-reads the file. The state path becomes a symlink to a file
	// in a directory the daemon does not watch, so that an edit there is
	// seen only on SIGHUP.
	other := filepath.Join(dir, "elsewhere")
	if err := os.Mkdir(other, 0o700); err != nil {
		t.Fatal(err)
	}
	real := filepath.Join(other, "state.yaml")
	if err := os.WriteFile(real, []byte(stateDoc("bob", "carol", "dave")), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, ".state.yaml.link")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(link, state); err != nil {
		t.Fatal(err)
	}
	waitVersions(t, data, 3)
	if err := os.WriteFile(real, []byte(stateDoc("bob", "carol", "dave", "erin")), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitVersions(t, data, 4)

	// SIGTERM: a clean stop, exit 0, socket removed.
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := d.waitExit(t, 3*time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM, want 0", code)
	}
	if _, err := os.Stat(filepath.Join(data, "control.sock")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("control socket after stop: %v, want it removed", err)
	}

	// Without the daemon, mfapply reads the store directly: the versions
	// are still there.
	waitVersions(t, data, 4)
}

func TestDaemonRefusesASecondDaemon(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	state := filepath.Join(dir, "state.yaml")
	if err := os.WriteFile(state, []byte(stateDoc("bob")), 0o600); err != nil {
		t.Fatal(err)
	}
	first := startDaemonProc(t, "--data", data, "-f", state)
	waitVersions(t, data, 1)

	second := startDaemonProc(t, "--data", data, "-f", state)
	if code := second.waitExit(t, 10*time.Second); code != 1 {
		t.Errorf("second daemon exit code %d, want 1", code)
	}
	if !strings.Contains(second.stderr.String(), "another mailfountaind") {
		t.Errorf("second daemon's log does not say why it stopped:\n%s", second.stderr)
	}
	if !first.running() {
		t.Fatal("the first daemon stopped")
	}
	waitVersions(t, data, 1)
}

func TestDaemonUsage(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string
	}{
		{"no state path", []string{"--data", dir}, 2, "-f PATH is required"},
		{"bad log level", []string{"--data", dir, "-f", dir, "--log-level", "loud"}, 2, "--log-level"},
		{"unknown flag", []string{"--nope"}, 2, "flag provided but not defined"},
		{"missing state file", []string{"--data", filepath.Join(dir, "data"), "-f", filepath.Join(dir, "absent.yaml")}, 1, "absent.yaml"},
		{"help", []string{"-h"}, 0, "usage: mailfountaind"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin(t, "mailfountaind"), tt.args...)
			out, err := cmd.CombinedOutput()
			code := 0
			if ee, ok := errors.AsType[*exec.ExitError](err); ok {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tt.wantCode || !strings.Contains(string(out), tt.wantErr) {
				t.Errorf("exit %d, want %d; output should contain %q:\n%s", code, tt.wantCode, tt.wantErr, out)
			}
		})
	}
}
