package supervisor

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mailfountain.dev/mailfountain/schema"
)

// lineServer is the test-only server kind: it greets a client with
// "hello CONFIG", then answers each line with "CONFIG: LINE" until "quit".
// Its sessions end only on quit or when its Serve is cancelled, so a test
// sees whether a reload dropped one.
type lineServer struct {
	config string
	fail   *sync.Map // endpoint → the error Serve returns at once
	serves *atomic.Int32
}

func (s *lineServer) Serve(ctx context.Context, endpoint string, ln net.Listener) error {
	s.serves.Add(1)
	if err, ok := s.fail.Load(endpoint); ok {
		return err.(error)
	}
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var (
		mu    sync.Mutex
		conns = map[net.Conn]bool{}
		wg    sync.WaitGroup
	)
	for {
		c, err := ln.Accept()
		if err != nil {
			break
		}
		mu.Lock()
		conns[c] = true
		mu.Unlock()
		wg.Go(func() {
			defer func() {
				c.Close()
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
			}()
			fmt.Fprintf(c, "hello %s\n", s.config)
			sc := bufio.NewScanner(c)
			for sc.Scan() {
				if sc.Text() == "quit" {
					fmt.Fprintf(c, "bye\n")
					return
				}
				fmt.Fprintf(c, "%s: %s\n", s.config, sc.Text())
			}
		})
	}
	// Stopped: the sessions left are closed.
	mu.Lock()
	for c := range conns {
		c.Close()
	}
	mu.Unlock()
	wg.Wait()
	if ctx.Err() == nil {
		return errors.New("listener closed")
	}
	return nil
}

// testKind is wanted when a domain of the document is delegated (the rule
// the DNS server will have); its config is the document's host name and
// its address is addrs[host name], or 127.0.0.1:0.
type testKind struct {
	builds atomic.Int32
	serves atomic.Int32
	addrs  map[string]string
	fail   sync.Map // endpoint → the error its Serve returns at once
	// buildErr, when set, fails every build.
	buildErr atomic.Pointer[error]
}

func (k *testKind) kind(drain time.Duration) Kind {
	return Kind{
		Name: "test",
		Want: func(st *schema.State) (Spec, string) {
			if !slices.ContainsFunc(st.Domains, func(d schema.Domain) bool { return d.DNS.Delegated }) {
				return Spec{}, "no delegated domain"
			}
			addr := k.addrs[st.System.Hostname]
			if addr == "" {
				addr = "127.0.0.1:0"
			}
			return Spec{Endpoints: []Endpoint{{Name: "line", Addr: addr}}, Config: st.System.Hostname}, ""
		},
		Build: func(ctx context.Context, spec Spec) (Instance, error) {
			if p := k.buildErr.Load(); p != nil {
				return nil, *p
			}
			k.builds.Add(1)
			return &lineServer{config: spec.Config, fail: &k.fail, serves: &k.serves}, nil
		},
		Drain: drain,
	}
}

func doc(host string, delegated bool) *schema.State {
	return &schema.State{
		System:  schema.System{Hostname: host},
		Domains: []schema.Domain{{Name: "a.example"}, {Name: "b.example", DNS: schema.DomainDNS{Delegated: delegated}}},
	}
}

func newSupervisor(t *testing.T, cfg Config, kinds ...Kind) *Supervisor {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(tlog{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	s, err := New(cfg, kinds...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

type tlog struct{ t *testing.T }

func (w tlog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// endpoint returns the status of the serving (not draining) endpoint.
func endpoint(t *testing.T, s *Supervisor, name string) ServerStatus {
	t.Helper()
	for _, st := range s.Status() {
		if st.Endpoint == name && st.State != StateDraining {
			return st
		}
	}
	t.Fatalf("no status for %s in %+v", name, s.Status())
	return ServerStatus{}
}

// session is a client of lineServer.
type session struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dial(t *testing.T, addr string) (*session, error) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return &session{t: t, c: c, br: bufio.NewReader(c)}, nil
}

func mustDial(t *testing.T, addr string) *session {
	t.Helper()
	s, err := dial(t, addr)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *session) line() string {
	s.t.Helper()
	l, err := s.br.ReadString('\n')
	if err != nil {
		s.t.Fatalf("read: %v (got %q)", err, l)
	}
	return strings.TrimSuffix(l, "\n")
}

func (s *session) expect(send, want string) {
	s.t.Helper()
	if send != "" {
		if _, err := fmt.Fprintf(s.c, "%s\n", send); err != nil {
			s.t.Fatalf("send %q: %v", send, err)
		}
	}
	if got := s.line(); got != want {
		s.t.Fatalf("sent %q: got %q, want %q", send, got, want)
	}
}

func refused(t *testing.T, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err == nil {
		c.Close()
		t.Fatalf("%s still accepts connections", addr)
	}
}

// waitUntil polls cond for up to 10 s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func draining(s *Supervisor) int {
	n := 0
	for _, st := range s.Status() {
		if st.State == StateDraining {
			n++
		}
	}
	return n
}

// TestWantedRule: the test kind, wanted when a domain is delegated, is
// started by one apply and stopped by the next.
func TestWantedRule(t *testing.T) {
	k := &testKind{}
	s := newSupervisor(t, Config{}, k.kind(time.Minute))
	if st := s.Status(); len(st) != 1 || st[0].State != StateOff || st[0].Reason != "no document applied yet" {
		t.Fatalf("before any document: %+v", st)
	}
	steps := []struct {
		name      string
		st        *schema.State
		wantState string
		reason    string
	}{
		{"no delegated domain", doc("h", false), StateOff, "no delegated domain"},
		{"a domain delegated", doc("h", true), StateServing, ""},
		{"no longer delegated", doc("h", false), StateOff, "no delegated domain"},
		{"delegated again", doc("h", true), StateServing, ""},
		{"no document", nil, StateOff, "no document applied yet"},
	}
	var last string // address of the last serving
	for _, step := range steps {
		s.Converge(t.Context(), step.st)
		st := s.Status()
		if st[0].State != step.wantState || st[0].Reason != step.reason {
			t.Fatalf("%s: status %+v, want %s %q", step.name, st, step.wantState, step.reason)
		}
		if step.wantState == StateServing {
			last = st[0].Addr
			c := mustDial(t, last)
			c.expect("", "hello h")
			c.expect("quit", "bye")
		} else if last != "" {
			refused(t, last)
		}
		if s.Failing() {
			t.Errorf("%s: Failing() = true", step.name)
		}
	}
	if n := k.builds.Load(); n != 2 {
		t.Errorf("%d builds, want 2 (one per start)", n)
	}
}

// TestReloadKeepsSessions: a reload that builds a new instance keeps the
// listener: the open session finishes on the old instance, new
// connections go to the new one, and none is refused meanwhile.
func TestReloadKeepsSessions(t *testing.T) {
	k := &testKind{}
	s := newSupervisor(t, Config{}, k.kind(time.Minute))
	s.Converge(t.Context(), doc("one", true))
	addr := endpoint(t, s, "line").Addr
	old := mustDial(t, addr)
	old.expect("", "hello one")

	// Clients connect all through the reload: every one is served.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var served atomic.Int32
	errs := make(chan error, 100)
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			c, err := dial(t, addr)
			if err != nil {
				errs <- err
				return
			}
			l, err := c.br.ReadString('\n')
			if err != nil || !strings.HasPrefix(l, "hello ") {
				errs <- fmt.Errorf("greeting %q, %v", l, err)
				return
			}
			fmt.Fprintf(c.c, "quit\n")
			if l, err := c.br.ReadString('\n'); err != nil || l != "bye\n" {
				errs <- fmt.Errorf("quit: %q, %v", l, err)
				return
			}
			c.c.Close()
			served.Add(1)
		}
	})
	time.Sleep(50 * time.Millisecond)
	s.Converge(t.Context(), doc("two", true))
	time.Sleep(50 * time.Millisecond)
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("a connection made during the reload: %v", err)
	}
	if served.Load() == 0 {
		t.Error("no connection made during the reload")
	}

	if got := endpoint(t, s, "line").Addr; got != addr {
		t.Fatalf("address after the reload %s, want %s kept", got, addr)
	}
	if k.builds.Load() != 2 {
		t.Fatalf("%d builds, want 2", k.builds.Load())
	}
	fresh := mustDial(t, addr)
	fresh.expect("", "hello two")
	// The old session is still served by the old instance.
	old.expect("still there?", "one: still there?")
	if n := draining(s); n != 1 {
		t.Fatalf("%d draining, want the old instance: %+v", n, s.Status())
	}
	old.expect("quit", "bye")
	waitUntil(t, "the old instance to stop once its session ended", func() bool { return draining(s) == 0 })
	fresh.expect("and you?", "two: and you?")
}

// TestDrainBound: an old instance whose session does not end is stopped
// when its kind's Drain has passed.
func TestDrainBound(t *testing.T) {
	k := &testKind{}
	s := newSupervisor(t, Config{}, k.kind(200*time.Millisecond))
	s.Converge(t.Context(), doc("one", true))
	old := mustDial(t, endpoint(t, s, "line").Addr)
	old.expect("", "hello one")
	s.Converge(t.Context(), doc("two", true))
	waitUntil(t, "the old instance to stop after its drain time", func() bool { return draining(s) == 0 })
	if l, err := old.br.ReadString('\n'); err == nil {
		t.Fatalf("the old session still open: read %q", l)
	}
}

// TestAddressChange: the document moves the server to another address:
// the new one is bound before the old listener closes; the session open
// on the old address finishes there. A failure to bind the new address
// leaves the server on the old one, with the error in its status.
func TestAddressChange(t *testing.T) {
	a1, a2 := freeAddr(t), freeAddr(t)
	k := &testKind{addrs: map[string]string{"one": a1, "two": a2}}
	s := newSupervisor(t, Config{}, k.kind(time.Minute))
	s.Converge(t.Context(), doc("one", true))
	old := mustDial(t, a1)
	old.expect("", "hello one")

	// a2 is taken by someone else: the server stays on a1.
	busy, err := net.Listen("tcp", a2)
	if err != nil {
		t.Fatal(err)
	}
	s.Converge(t.Context(), doc("two", true))
	st := endpoint(t, s, "line")
	if st.State != StateServing || st.Addr != a1 || !strings.Contains(st.Error, "address already in use") {
		t.Fatalf("status after a failed move: %+v", st)
	}
	if !s.Failing() {
		t.Error("Failing() = false with the new address not bound")
	}
	other := mustDial(t, a1)
	other.expect("", "hello one")
	other.expect("quit", "bye")

	// Freed: the next converge (the daemon's next resync) moves it.
	busy.Close()
	s.Converge(t.Context(), doc("two", true))
	st = endpoint(t, s, "line")
	if st.State != StateServing || st.Addr != a2 || st.Error != "" {
		t.Fatalf("status after the move: %+v", st)
	}
	if s.Failing() {
		t.Error("Failing() = true after the move")
	}
	mustDial(t, a2).expect("", "hello two")
	refused(t, a1)
	old.expect("still there?", "one: still there?")
	old.expect("quit", "bye")
	waitUntil(t, "the old instance to stop", func() bool { return draining(s) == 0 })
}

// freeAddr returns a loopback address with a port free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestFailures: a server that cannot bind, build or serve is reported and
// leaves the others alone; the next Converge tries it again.
func TestFailures(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	serveErr := errors.New("boom")
	k := &testKind{}
	other := &testKind{}
	otherKind := other.kind(time.Minute)
	otherKind.Name = "other"
	inner := otherKind.Want
	otherKind.Want = func(st *schema.State) (Spec, string) {
		spec, off := inner(st)
		spec.Endpoints = []Endpoint{{Name: "bound", Addr: busy.Addr().String()}, {Name: "fine", Addr: "127.0.0.1:0"}, {Name: "flaky", Addr: "127.0.0.1:0"}}
		return spec, off
	}
	other.fail.Store("flaky", serveErr)
	s := newSupervisor(t, Config{}, k.kind(time.Minute), otherKind)

	// test: build fails; other: bound fails to bind, flaky fails to serve.
	buildErr := errors.New("no certificate")
	k.buildErr.Store(&buildErr)
	s.Converge(t.Context(), doc("h", true))
	waitUntil(t, "flaky to fail", func() bool { return byEndpoint(s)["flaky"].State == StateFailed })
	got := byEndpoint(s)
	if st := s.Status()[0]; st.Server != "test" || st.State != StateFailed || !strings.Contains(st.Error, "no certificate") {
		t.Errorf("test server: %+v", st)
	}
	if st := got["bound"]; st.State != StateFailed || !strings.Contains(st.Error, "address already in use") {
		t.Errorf("bound: %+v", st)
	}
	if st := got["flaky"]; !strings.Contains(st.Error, "boom") {
		t.Errorf("flaky: %+v", st)
	}
	if st := got["fine"]; st.State != StateServing {
		t.Fatalf("fine: %+v", st)
	}
	mustDial(t, got["fine"].Addr).expect("", "hello h")
	if !s.Failing() {
		t.Fatal("Failing() = false")
	}

	// Fixed: the same document, converged again, starts them.
	k.buildErr.Store(nil)
	busy.Close()
	other.fail.Delete("flaky")
	s.Converge(t.Context(), doc("h", true))
	got = byEndpoint(s)
	for _, name := range []string{"line", "bound", "fine", "flaky"} {
		if got[name].State != StateServing {
			t.Errorf("%s after the retry: %+v", name, got[name])
			continue
		}
		mustDial(t, got[name].Addr).expect("", "hello h")
	}
	if s.Failing() {
		t.Error("Failing() = true after the retry")
	}
}

func byEndpoint(s *Supervisor) map[string]ServerStatus {
	m := map[string]ServerStatus{}
	for _, st := range s.Status() {
		if st.Endpoint != "" && st.State != StateDraining {
			m[st.Endpoint] = st
		}
	}
	return m
}

// TestListenOverrides: the listen flags set an endpoint's address or turn
// it off; with every endpoint off, the server is off.
func TestListenOverrides(t *testing.T) {
	addr := freeAddr(t)
	tests := []struct {
		name   string
		listen map[string]string
		want   ServerStatus
	}{
		{"address", map[string]string{"line": addr}, ServerStatus{Server: "test", Endpoint: "line", Addr: addr, State: StateServing}},
		{"off", map[string]string{"line": Off}, ServerStatus{Server: "test", State: StateOff, Reason: "every endpoint is turned off"}},
		{"empty is off", map[string]string{"line": ""}, ServerStatus{Server: "test", State: StateOff, Reason: "every endpoint is turned off"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := &testKind{}
			s := newSupervisor(t, Config{Listen: tt.listen}, k.kind(time.Minute))
			s.Converge(t.Context(), doc("h", true))
			got := s.Status()
			if len(got) != 1 {
				t.Fatalf("status %+v", got)
			}
			got[0].Since = time.Time{}
			if got[0] != tt.want {
				t.Errorf("status %+v, want %+v", got[0], tt.want)
			}
			s.Stop()
		})
	}
}

// TestStopEndsEverything: Stop closes the listeners and the sessions and
// leaves no goroutine behind, draining instances included.
func TestStopEndsEverything(t *testing.T) {
	before := runtime.NumGoroutine()
	k := &testKind{}
	s, err := New(Config{}, k.kind(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	s.Converge(t.Context(), doc("one", true))
	addr := endpoint(t, s, "line").Addr
	old := mustDial(t, addr)
	old.expect("", "hello one")
	s.Converge(t.Context(), doc("two", true))
	cur := mustDial(t, addr)
	cur.expect("", "hello two")
	s.Stop()
	for _, c := range []*session{old, cur} {
		if l, err := c.br.ReadString('\n'); err == nil {
			t.Errorf("session open after Stop: read %q", l)
		}
	}
	refused(t, addr)
	s.Converge(t.Context(), doc("three", true))
	if k.builds.Load() != 2 {
		t.Errorf("Converge after Stop built a server")
	}
	waitUntil(t, "the goroutines to end", func() bool { return runtime.NumGoroutine() <= before })
}

func TestNewRefusesBadKinds(t *testing.T) {
	k := (&testKind{}).kind(0)
	tests := []struct {
		name  string
		kinds []Kind
	}{
		{"twice", []Kind{k, k}},
		{"no name", []Kind{{Want: k.Want, Build: k.Build}}},
		{"no rule", []Kind{{Name: "x", Build: k.Build}}},
	}
	for _, tt := range tests {
		if _, err := New(Config{}, tt.kinds...); err == nil {
			t.Errorf("%s: no error", tt.name)
		}
	}
}
