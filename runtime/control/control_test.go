package control

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"mailfountain.dev/mailfountain/runtime/applier"
	"mailfountain.dev/mailfountain/runtime/store"
	"mailfountain.dev/mailfountain/runtime/testenv"
	"mailfountain.dev/mailfountain/schema"
)

// peerHelperEnv makes the test binary a client that dials the data
// directory named by the variable and exits; the peer credentials test
// runs it under another uid.
const peerHelperEnv = "MF_CONTROL_PEER_HELPER"

// Exit statuses of the helper.
const (
	helperDenied = 3
	helperOther  = 4
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(peerHelperEnv); dir != "" {
		c, err := Dial(dir)
		if err == nil {
			c.Close()
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, err)
		if errors.Is(err, ErrDenied) {
			os.Exit(helperDenied)
		}
		os.Exit(helperOther)
	}
	os.Exit(m.Run())
}

const docV1 = `system: {model: M500}
network: {mode: router, wan: {method: dhcp}}
smtp: {mode: direct}
domains:
  - name: a.example
    accounts:
      - {id: bob, name: Bob}
`

const docV2 = `system: {model: M500}
network: {mode: router, wan: {method: dhcp}}
smtp: {mode: direct}
domains:
  - name: a.example
    accounts:
      - {id: bob, name: Robert}
      - {id: carol, name: Carol}
`

// docInvalid has an error on line 3: an unknown model.
const docInvalid = `system:
  hostname: mail
  model: Z900
network: {mode: router, wan: {method: dhcp}}
smtp: {mode: direct}
`

func sources(name, doc string) []schema.Source {
	return []schema.Source{{Name: name, Data: []byte(doc), Mode: 0o600}}
}

// logBuffer is a log destination that tests read while the server writes.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// daemon is a control server on a real applier over a fresh data directory.
type daemon struct {
	dir  string
	a    *applier.Applier
	srv  *Server
	logs *logBuffer
	done chan error
	stop context.CancelFunc
}

func startDaemon(t *testing.T, dir string) *daemon {
	t.Helper()
	ctx := context.Background()
	logs := &logBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a, err := applier.Open(ctx, dir, logger)
	if err != nil {
		t.Fatalf("open applier: %v", err)
	}
	srv, err := Listen(dir, a, logger)
	if err != nil {
		a.Close()
		t.Fatalf("listen: %v", err)
	}
	sctx, stop := context.WithCancel(ctx)
	d := &daemon{dir: dir, a: a, srv: srv, logs: logs, done: make(chan error, 1), stop: stop}
	go func() { d.done <- srv.Serve(sctx) }()
	t.Cleanup(func() { d.shutdown(t) })
	return d
}

func (d *daemon) shutdown(t *testing.T) {
	t.Helper()
	if d.stop == nil {
		return
	}
	d.stop()
	d.stop = nil
	select {
	case err := <-d.done:
		if err != nil {
			t.Errorf("serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("server did not stop")
	}
	d.a.Close()
}

func dial(t *testing.T, dir string) *Client {
	t.Helper()
	c, err := Dial(dir)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func countChanges(p *applier.Plan) int {
	n := 0
	for _, s := range p.Engine.Steps {
		n += len(s.Changes)
	}
	return n
}

// TestClientOperations runs every operation mfapply needs through the
// socket, against a real applier and store.
func TestClientOperations(t *testing.T) {
	ctx := context.Background()
	d := startDaemon(t, t.TempDir())
	c := dial(t, d.dir)

	p1, err := c.Plan(ctx, sources("v1.yaml", docV1))
	if err != nil {
		t.Fatalf("plan: %v", err)
	}
	if !p1.NewVersion || countChanges(p1) == 0 || p1.StateHash == "" || p1.State == nil {
		t.Fatalf("plan of a fresh directory: new version %v, %d changes, hash %q", p1.NewVersion, countChanges(p1), p1.StateHash)
	}
	res, err := c.Apply(ctx, p1, "first", "mfapply")
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	if res.Version != 1 || len(res.Statuses) == 0 {
		t.Fatalf("apply: version %d, statuses %+v", res.Version, res.Statuses)
	}

	// The same plan again: the latest version moved, the daemon refuses.
	if _, err := c.Apply(ctx, p1, "again", "mfapply"); !errors.Is(err, applier.ErrStale) {
		t.Fatalf("apply of a stale plan: %v, want ErrStale", err)
	}
	if err := c.Verify(ctx, p1); !errors.Is(err, applier.ErrStale) {
		t.Fatalf("verify of a stale plan: %v, want ErrStale", err)
	}

	same, err := c.Plan(ctx, sources("v1.yaml", docV1))
	if err != nil {
		t.Fatalf("plan again: %v", err)
	}
	if same.NewVersion || countChanges(same) != 0 || same.BaseVersion != 1 {
		t.Fatalf("plan of the applied document: new version %v, %d changes, base %d", same.NewVersion, countChanges(same), same.BaseVersion)
	}
	if err := c.Verify(ctx, same); err != nil {
		t.Fatalf("verify a fresh plan: %v", err)
	}

	p2, err := c.Plan(ctx, sources("v2.yaml", docV2))
	if err != nil {
		t.Fatalf("plan v2: %v", err)
	}
	if res, err := c.Apply(ctx, p2, "second", "mfapply"); err != nil || res.Version != 2 {
		t.Fatalf("apply v2: %+v, %v", res, err)
	}

	vs, err := c.History(ctx)
	if err != nil {
		t.Fatalf("history: %v", err)
	}
	if len(vs) != 2 || vs[0].N != 1 || vs[1].N != 2 || vs[1].Message != "second" || vs[1].Origin != "mfapply" || vs[0].Created.IsZero() {
		t.Fatalf("history: %+v", vs)
	}

	v1, err := c.Show(ctx, 1)
	if err != nil {
		t.Fatalf("show: %v", err)
	}
	if len(v1.Sources) != 1 || v1.Sources[0].Name != "v1.yaml" || string(v1.Sources[0].Data) != docV1 || !bytes.Contains(v1.State, []byte(`"bob"`)) {
		t.Fatalf("show 1: %+v", v1)
	}
	if _, err := c.Show(ctx, 99); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("show 99: %v, want store.ErrNotFound", err)
	}

	diff, err := c.Diff(ctx, 1, 2)
	if err != nil {
		t.Fatalf("diff: %v", err)
	}
	var got []string
	for _, ch := range diff {
		got = append(got, fmt.Sprintf("%s %s %s %v", ch.Op, ch.Kind, ch.Name, ch.Changed))
		if ch.From != nil || ch.To != nil {
			t.Errorf("diff change %s %s carries its resources over the socket", ch.Kind, ch.Name)
		}
	}
	joined := strings.Join(got, "\n")
	if !strings.Contains(joined, "~ account bob@a.example [name]") || !strings.Contains(joined, "+ account carol@a.example") {
		t.Fatalf("diff 1 2:\n%s", joined)
	}
	if latest, err := c.Diff(ctx, 1, 0); err != nil || len(latest) != len(diff) {
		t.Fatalf("diff 1 (latest): %v, %v", latest, err)
	}

	rb, err := c.PlanRollback(ctx, 1)
	if err != nil {
		t.Fatalf("plan rollback: %v", err)
	}
	if len(rb.Sources) != 1 || string(rb.Sources[0].Data) != docV1 || rb.Origin != applier.OriginRollback || countChanges(rb) == 0 {
		t.Fatalf("rollback plan: sources %d, origin %q, %d changes", len(rb.Sources), rb.Origin, countChanges(rb))
	}
	if res, err := c.Apply(ctx, rb, "back", ""); err != nil || res.Version != 3 {
		t.Fatalf("apply rollback: %+v, %v", res, err)
	}
	if vs, err := c.History(ctx); err != nil || len(vs) != 3 || vs[2].Origin != applier.OriginRollback {
		t.Fatalf("history after rollback: %+v, %v", vs, err)
	}

	// Export here, import into another daemon's fresh directory.
	var archive bytes.Buffer
	if err := c.Export(ctx, &archive); err != nil {
		t.Fatalf("export: %v", err)
	}
	d2 := startDaemon(t, t.TempDir())
	c2 := dial(t, d2.dir)
	if err := c2.Import(ctx, bytes.NewReader(archive.Bytes())); err != nil {
		t.Fatalf("import: %v", err)
	}
	if vs, err := c2.History(ctx); err != nil || len(vs) != 3 {
		t.Fatalf("history after import: %+v, %v", vs, err)
	}
	if err := c2.Import(ctx, strings.NewReader("not an archive")); err == nil {
		t.Fatalf("import of garbage succeeded")
	}

	if !strings.Contains(d.logs.String(), "path="+pathApply) {
		t.Errorf("the daemon's log has no apply request:\n%s", d.logs.String())
	}
}

func TestInvalidDocumentKeepsPositions(t *testing.T) {
	d := startDaemon(t, t.TempDir())
	c := dial(t, d.dir)
	_, err := c.Plan(context.Background(), sources("bad.yaml", docInvalid))
	var se schema.Errors
	if !errors.As(err, &se) || len(se) == 0 {
		t.Fatalf("plan of an invalid document: %v, want schema.Errors", err)
	}
	if se[0].File != "bad.yaml" || se[0].Line != 3 {
		t.Fatalf("first error %+v, want bad.yaml line 3", se[0])
	}
}

func TestPlanFileThroughDaemon(t *testing.T) {
	ctx := context.Background()
	d := startDaemon(t, t.TempDir())
	c := dial(t, d.dir)
	p, err := c.Plan(ctx, sources("v1.yaml", docV1))
	if err != nil {
		t.Fatalf("plan: %v", err)
	}
	file := filepath.Join(t.TempDir(), "v1.plan")
	if err := c.WritePlanFile(p, file); err != nil {
		t.Fatalf("write plan: %v", err)
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("plan file: %v, %v", fi, err)
	}
	// The applier itself reads what went through the daemon.
	if direct, err := d.a.ReadPlanFile(file); err != nil || direct.StateHash != p.StateHash {
		t.Fatalf("applier reads the plan file: %v", err)
	}
	read, err := c.ReadPlanFile(file)
	if err != nil {
		t.Fatalf("read plan: %v", err)
	}
	if read.StateHash != p.StateHash || countChanges(read) != countChanges(p) || len(read.Sources) != 1 {
		t.Fatalf("plan read back differs: %+v", read)
	}
	if err := c.Verify(ctx, read); err != nil {
		t.Fatalf("verify: %v", err)
	}
	if res, err := c.Apply(ctx, read, "", "mfapply"); err != nil || res.Version != 1 {
		t.Fatalf("apply plan file: %+v, %v", res, err)
	}
	// Now stale.
	read, err = c.ReadPlanFile(file)
	if err == nil {
		err = c.Verify(ctx, read)
	}
	if !errors.Is(err, applier.ErrStale) {
		t.Fatalf("stale plan file: %v, want ErrStale", err)
	}
	if _, err := c.ReadPlanFile(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatalf("reading a missing plan file succeeded")
	}
}

func TestDialWithoutDaemon(t *testing.T) {
	dir := t.TempDir()
	start := time.Now()
	if _, err := Dial(dir); !errors.Is(err, ErrNoDaemon) {
		t.Fatalf("dial with no socket: %v, want ErrNoDaemon", err)
	}
	// A socket file nobody listens on: what a killed daemon leaves.
	leaveStaleSocket(t, SocketPath(dir))
	if _, err := Dial(dir); !errors.Is(err, ErrNoDaemon) {
		t.Fatalf("dial with a stale socket: %v, want ErrNoDaemon", err)
	}
	if el := time.Since(start); el > time.Second {
		t.Fatalf("dialing no daemon took %v", el)
	}
}

func leaveStaleSocket(t *testing.T, path string) {
	t.Helper()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("stale socket: %v", err)
	}
}

func TestListen(t *testing.T) {
	t.Run("socket is 0600 and removed on stop", func(t *testing.T) {
		d := startDaemon(t, t.TempDir())
		fi, err := os.Lstat(SocketPath(d.dir))
		if err != nil {
			t.Fatalf("socket: %v", err)
		}
		if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
			t.Fatalf("socket mode %v, want a 0600 socket", fi.Mode())
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); !ok || int(st.Uid) != os.Getuid() {
			t.Fatalf("socket owner: %+v", fi.Sys())
		}
		d.shutdown(t)
		if _, err := os.Lstat(SocketPath(d.dir)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("socket after stop: %v", err)
		}
		if _, err := Dial(d.dir); !errors.Is(err, ErrNoDaemon) {
			t.Fatalf("dial after stop: %v", err)
		}
		// The lock went with the server: another can start.
		d2 := startDaemon(t, d.dir)
		dial(t, d2.dir)
	})
	t.Run("stale socket replaced", func(t *testing.T) {
		dir := t.TempDir()
		leaveStaleSocket(t, SocketPath(dir))
		d := startDaemon(t, dir)
		c := dial(t, d.dir)
		if _, err := c.History(context.Background()); err != nil {
			t.Fatalf("history: %v", err)
		}
	})
	t.Run("second server refused", func(t *testing.T) {
		d := startDaemon(t, t.TempDir())
		a, err := applier.Open(context.Background(), d.dir, nil)
		if err != nil {
			t.Fatalf("open applier: %v", err)
		}
		defer a.Close()
		if s, err := Listen(d.dir, a, nil); err == nil {
			s.Close()
			t.Fatalf("a second server listened on the same directory")
		} else if !strings.Contains(err.Error(), "another mailfountaind") {
			t.Fatalf("second server: %v", err)
		}
		dial(t, d.dir) // the first one still serves
	})
	t.Run("not a socket", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(SocketPath(dir), []byte("keep me"), 0o600); err != nil {
			t.Fatal(err)
		}
		a, err := applier.Open(context.Background(), dir, nil)
		if err != nil {
			t.Fatalf("open applier: %v", err)
		}
		defer a.Close()
		if s, err := Listen(dir, a, nil); err == nil {
			s.Close()
			t.Fatalf("listen replaced a regular file")
		}
		if b, err := os.ReadFile(SocketPath(dir)); err != nil || string(b) != "keep me" {
			t.Fatalf("the regular file was touched: %q, %v", b, err)
		}
	})
}

// TestPeerRefused connects as another user: the kernel's SO_PEERCRED says
// who it is, and the server refuses it even though the file's mode (made
// loose for the test) lets it connect.
func TestPeerRefused(t *testing.T) {
	if os.Getuid() != 0 {
		testenv.Unavailable(t, "needs root to run a client as another user")
	}
	const nobody = 65534
	dir, err := os.MkdirTemp("", "control-peer-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, dir)
	if err := os.Chmod(SocketPath(dir), 0o666); err != nil {
		t.Fatal(err)
	}
	// The test binary, copied where the other user can run it.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "control.test")
	copyFile(t, self, bin, 0o755)

	cmd := exec.Command(bin, "-test.run=^$")
	cmd.Env = append(os.Environ(), peerHelperEnv+"="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != helperDenied {
		t.Fatalf("client as uid %d: %v, output:\n%s", nobody, err, out)
	}
	if !strings.Contains(string(out), "uid 65534") {
		t.Errorf("refusal does not name the uid: %s", out)
	}
	if !strings.Contains(d.logs.String(), "control request refused") {
		t.Errorf("the refusal is not logged:\n%s", d.logs.String())
	}

	// Root, through the same socket, is served.
	cmd = exec.Command(bin, "-test.run=^$")
	cmd.Env = append(os.Environ(), peerHelperEnv+"="+dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("client as root: %v, output:\n%s", err, out)
	}
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestAllowed(t *testing.T) {
	s := &Server{uid: 1000}
	for _, tc := range []struct {
		uid  int
		want bool
	}{{0, true}, {1000, true}, {1001, false}, {65534, false}, {-1, false}} {
		if got := s.allowed(tc.uid); got != tc.want {
			t.Errorf("allowed(%d) = %v, want %v", tc.uid, got, tc.want)
		}
	}
}

// TestConcurrentApplies sends two applies at once through the socket: the
// applier serialises them and the second, planned against the same
// version as the first, is refused as stale rather than applied blind.
func TestConcurrentApplies(t *testing.T) {
	ctx := context.Background()
	d := startDaemon(t, t.TempDir())
	c := dial(t, d.dir)
	pa, err := c.Plan(ctx, sources("v1.yaml", docV1))
	if err != nil {
		t.Fatal(err)
	}
	pb, err := c.Plan(ctx, sources("v2.yaml", docV2))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, p := range []*applier.Plan{pa, pb} {
		ci := dial(t, d.dir)
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = ci.Apply(ctx, p, "", "mfapply")
		}()
	}
	wg.Wait()
	ok, stale := 0, 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, applier.ErrStale):
			stale++
		default:
			t.Errorf("apply: %v", err)
		}
	}
	if ok != 1 || stale != 1 {
		t.Fatalf("concurrent applies: %d applied, %d stale (%v)", ok, stale, errs)
	}
	if vs, err := c.History(ctx); err != nil || len(vs) != 1 {
		t.Fatalf("history: %d versions, %v", len(vs), err)
	}
}
