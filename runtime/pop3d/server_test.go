package pop3d

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"mailfountain.dev/mailfountain/runtime/auth"
	"mailfountain.dev/mailfountain/runtime/mailconf"
	"mailfountain.dev/mailfountain/runtime/store"
)

func TestNewChecksConfig(t *testing.T) {
	st := &store.Store{}
	if _, err := New(Config{Mailboxes: st, Auth: failingAuth{}}); err == nil {
		t.Error("New accepted a config without a maildir store")
	}
	open := newFakeStore().opener()
	for _, cfg := range []Config{{Auth: failingAuth{}}, {Mailboxes: st}} {
		if _, err := newServer(cfg, open); err == nil {
			t.Errorf("newServer accepted %+v", cfg)
		}
	}
	s, err := newServer(Config{Mailboxes: st, Auth: failingAuth{}}, open)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ServeTLS(context.Background(), ln); err == nil {
		t.Error("ServeTLS without a TLS configuration returned nil")
	}
	if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		c.Close()
		t.Error("ServeTLS without TLS left its listener open")
	}
}

// failingAuth is an authenticator whose back end is down.
type failingAuth struct{}

func (failingAuth) Login(context.Context, string, netip.Addr, string, string) (*auth.Principal, error) {
	return nil, errors.New("database is locked")
}

func TestPasswordPolicy(t *testing.T) {
	lan := []netip.Prefix{netip.MustParsePrefix("192.168.1.0/24"), netip.MustParsePrefix("fd00::/8")}
	cases := []struct {
		tls, legacy bool
		remote      string
		want        bool
	}{
		{tls: true, remote: "203.0.113.5", want: true},
		{tls: true, legacy: true, remote: "203.0.113.5", want: true},
		{legacy: true, remote: "192.168.1.20", want: true},
		{legacy: true, remote: "fd00::20", want: true},
		{legacy: true, remote: "127.0.0.1", want: true},
		{legacy: true, remote: "::1", want: true},
		{legacy: true, remote: "203.0.113.5", want: false},
		{legacy: true, remote: "192.168.2.20", want: false},
		{remote: "192.168.1.20", want: false},
		{remote: "127.0.0.1", want: false},
	}
	for _, c := range cases {
		s := &session{tls: c.tls, remote: netip.MustParseAddr(c.remote),
			settings: mailconf.Settings{LAN: lan, LegacyPlainAuth: c.legacy}}
		if got := s.passwordAllowed(); got != c.want {
			t.Errorf("tls=%v legacy=%v from %s: allowed %v, want %v", c.tls, c.legacy, c.remote, got, c.want)
		}
	}
}

func TestAuthFailureDelay(t *testing.T) {
	const delay = 300 * time.Millisecond
	e := newEnv(t, envOptions{legacy: true, cfg: func(c *Config) { c.AuthFailureDelay = delay }})
	c := e.dialGreeted()
	start := time.Now()
	if got := c.login(alice, "wrong"); got != "-ERR [AUTH] invalid login" {
		t.Fatalf("bad password: %q", got)
	}
	if d := time.Since(start); d < delay {
		t.Fatalf("failed login answered after %v, want at least %v", d, delay)
	}
	if got := c.login(alice, alicePassword); !strings.HasPrefix(got, "+OK") {
		t.Fatalf("good password: %q", got)
	}
}

// TestMaildropFailures covers the store failing under a session, on a
// fake store: the real one cannot be made to fail on demand.
func TestMaildropFailures(t *testing.T) {
	fake := newFakeStore()
	e := newEnv(t, envOptions{legacy: true, fake: fake})
	e.deliver("alice", msg1, msg2)

	fake.mu.Lock()
	fake.failOpen = errors.New("disk on fire")
	fake.mu.Unlock()
	c := e.dialGreeted()
	if got := c.login(alice, alicePassword); got != "-ERR [SYS/TEMP] cannot open your mailbox, try later" {
		t.Fatalf("login with a failing store: %q", got)
	}
	fake.mu.Lock()
	fake.failOpen = nil
	fake.failExpunge = errors.New("read-only file system")
	fake.mu.Unlock()
	// The failed open left the mailbox unlocked, and the session in the
	// authorization state.
	if got := c.login(alice, alicePassword); !strings.HasPrefix(got, "+OK alice@example.org has 2 messages") {
		t.Fatalf("login once the store is back: %q", got)
	}
	c.write("DELE 1\r\nQUIT\r\n")
	if got := c.line(); got != "+OK message 1 deleted" {
		t.Fatalf("DELE: %q", got)
	}
	if got := c.line(); got != "-ERR [SYS/TEMP] some deleted messages not removed" {
		t.Fatalf("QUIT with a failing expunge: %q", got)
	}
	c.closed()
	e.waitUnlocked()
	if n := len(e.snapshot("alice").Messages); n != 2 {
		t.Fatalf("%d messages left, want 2", n)
	}
}

func TestAuthBackendDown(t *testing.T) {
	e := newEnv(t, envOptions{legacy: true, cfg: func(c *Config) { c.Auth = failingAuth{} }})
	c := e.dialGreeted()
	if got := c.login(alice, alicePassword); got != "-ERR [SYS/TEMP] authentication unavailable, try later" {
		t.Fatalf("login: %q", got)
	}
	c.write("NOOP\r\n")
	if got := c.line(); got != "-ERR not authenticated" {
		t.Fatalf("after a failed back end: %q", got)
	}
}

func TestIdleTimeouts(t *testing.T) {
	e := newEnv(t, envOptions{legacy: true, cfg: func(c *Config) {
		c.AuthIdleTimeout = 300 * time.Millisecond
		c.IdleTimeout = 900 * time.Millisecond
	}})
	cases := []struct {
		name     string
		login    bool
		min, max time.Duration
	}{
		{"before login", false, 300 * time.Millisecond, 850 * time.Millisecond},
		{"after login", true, 900 * time.Millisecond, 4 * time.Second},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// Taken before the server sets its deadline, so that the
			// time measured is at least the timeout.
			start := time.Now()
			cl := e.dialGreeted()
			if c.login {
				start = time.Now()
				if got := cl.login(alice, alicePassword); !strings.HasPrefix(got, "+OK") {
					t.Fatalf("login: %q", got)
				}
			}
			cl.closed() // without a word (RFC 1939 3)
			if d := time.Since(start); d < c.min || d > c.max {
				t.Fatalf("closed after %v, want between %v and %v", d, c.min, c.max)
			}
			e.waitUnlocked()
		})
	}
}

func TestConnectionLimits(t *testing.T) {
	cases := []struct {
		name         string
		total, perIP int
		want         string
	}{
		{"per address", 10, 2, "-ERR [SYS/TEMP] too many connections from your address, try later"},
		{"in all", 2, 10, "-ERR [SYS/TEMP] too many connections, try later"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, envOptions{cfg: func(cfg *Config) { cfg.MaxConns, cfg.MaxConnsPerIP = c.total, c.perIP }})
			c1, _ := e.dialGreeted(), e.dialGreeted()
			c3 := e.dial(e.addr)
			if got := c3.line(); got != c.want {
				t.Fatalf("third connection: %q", got)
			}
			c3.closed()
			// The implicit TLS port shares the limits; its clients are
			// closed without a word (they expect a TLS handshake).
			c4, err := net.Dial("tcp", e.tlsAddr)
			if err != nil {
				t.Fatal(err)
			}
			defer c4.Close()
			c4.SetReadDeadline(time.Now().Add(5 * time.Second))
			if got, err := io.ReadAll(c4); err != nil || len(got) != 0 {
				t.Fatalf("connection to the TLS port: read %q, %v; want the end", got, err)
			}
			c1.write("QUIT\r\n")
			c1.line()
			c1.closed()
			// The slot is free once the server has closed its side.
			deadline := time.Now().Add(5 * time.Second)
			for {
				c5 := e.dial(e.addr)
				got := c5.line()
				if strings.HasPrefix(got, "+OK") {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("after a client left: %q", got)
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}

// TestShutdown: when Serve's ctx is done, idle sessions are told and
// closed at once, a slow RETR is cut after the grace period, nothing is
// deleted, and Serve returns nil.
func TestShutdown(t *testing.T) {
	e := newEnv(t, envOptions{legacy: true, cfg: func(c *Config) { c.ShutdownGrace = 500 * time.Millisecond }})
	big := bigMessage(8 << 20)
	e.deliver("alice", msg1)
	e.deliver("bob", big)

	idle := e.dialGreeted()
	a := e.dialGreeted()
	if got := a.login(alice, alicePassword); !strings.HasPrefix(got, "+OK") {
		t.Fatal(got)
	}
	a.write("DELE 1\r\n")
	a.line()
	// bob's client asks for a big message and reads none of it: the
	// server blocks writing.
	b := e.dialGreeted()
	if got := b.login(bob, bobPassword); !strings.HasPrefix(got, "+OK") {
		t.Fatal(got)
	}
	b.write("RETR 1\r\n")
	time.Sleep(100 * time.Millisecond)

	start := time.Now()
	e.stop()
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Serve took %v to return", d)
	}
	for _, c := range []*client{idle, a} {
		if got := c.line(); got != "-ERR [SYS/TEMP] server shutting down" {
			t.Errorf("idle client told %q", got)
		}
		c.closed()
	}
	if _, err := net.DialTimeout("tcp", e.addr, time.Second); err == nil {
		t.Error("the listener still accepts")
	}
	if n := len(e.snapshot("alice").Messages); n != 1 {
		t.Errorf("shutdown committed a DELE: %d messages left", n)
	}
}

// bigMessage is a message of about size bytes whose lines vary in length
// and often start with dots.
func bigMessage(size int) string {
	var b strings.Builder
	b.WriteString("From: big@example.net\r\nSubject: big\r\n\r\n")
	for i := 0; b.Len() < size; i++ {
		switch i % 7 {
		case 0:
			b.WriteString(".")
		case 3:
			b.WriteString("..")
		case 5:
			b.WriteString(strings.Repeat("L", 40<<10)) // longer than a buffer
		}
		fmt.Fprintf(&b, "line %d %s\r\n", i, strings.Repeat("x", i%80))
	}
	return b.String()
}

// TestRetrLargeMessage checks that a large message comes out whole and
// that the server streams it rather than loading it.
func TestRetrLargeMessage(t *testing.T) {
	e := newEnv(t, envOptions{legacy: true})
	const size = 16 << 20
	big := bigMessage(size)
	e.deliver("alice", big)
	c := e.dialGreeted()
	if got := c.login(alice, alicePassword); !strings.HasPrefix(got, "+OK") {
		t.Fatal(got)
	}

	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	c.write("RETR 1\r\n")
	if got := c.line(); got != fmt.Sprintf("+OK %d octets", len(big)) {
		t.Fatalf("RETR: %q", got)
	}
	// Read and un-stuff without keeping the lines, so that what is
	// allocated is the server's doing.
	h := sha256.New()
	c.conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	br := c.r // it may hold the start of the message already
	atStart := true
	for {
		frag, err := br.ReadSlice('\n')
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			t.Fatalf("reading the message: %v", err)
		}
		if atStart && bytes.Equal(frag, []byte(".\r\n")) {
			break
		}
		if atStart && len(frag) > 0 && frag[0] == '.' {
			frag = frag[1:]
		}
		h.Write(frag)
		atStart = err == nil
	}
	runtime.ReadMemStats(&after)
	if got, want := h.Sum(nil), sha256.Sum256([]byte(big)); !bytes.Equal(got, want[:]) {
		t.Fatal("the message read differs from the one delivered")
	}
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("RETR of %d bytes allocated %d bytes in the process", len(big), alloc)
	if alloc > size/4 {
		t.Errorf("RETR of %d bytes allocated %d bytes: not streamed", len(big), alloc)
	}
	c.write("QUIT\r\n")
	if got := c.line(); !strings.HasPrefix(got, "+OK") {
		t.Fatal(got)
	}
	_, _ = io.Copy(io.Discard, c.r)
}

// TestSlowReader: a RETR must be read within IdleTimeout plus the time
// MinReadRate gives its size; a client reading a trickle is cut off then,
// not given a fresh deadline at each of the server's writes.
func TestSlowReader(t *testing.T) {
	const size = 8 << 20 // well over what the socket buffers hold
	e := newEnv(t, envOptions{legacy: true, cfg: func(c *Config) {
		c.IdleTimeout = 500 * time.Millisecond
		c.MinReadRate = 4 << 20 // so 2.5 s in all for the message
	}})
	body := strings.Repeat(strings.Repeat("x", 998)+"\r\n", size/1000)
	e.deliver("alice", "Subject: big\r\n\r\n"+body)

	// A small receive buffer, so that the server's writes wait on the
	// client's reads.
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		return errors.Join(err, serr)
	}}
	conn, err := d.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := &client{t: t, e: e, conn: conn, r: bufio.NewReader(conn)}
	c.line()
	if got := c.login(alice, alicePassword); !strings.HasPrefix(got, "+OK") {
		t.Fatalf("login: %q", got)
	}
	start := time.Now()
	c.write("RETR 1\r\n")
	// 16 KiB every 100 ms: the message would take 50 s.
	buf := make([]byte, 16<<10)
	read := 0
	for {
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := io.ReadFull(conn, buf)
		read += n
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !isReset(err) {
				t.Fatalf("after %d bytes: %v, want the connection closed", read, err)
			}
			break
		}
		if took := time.Since(start); took > 12*time.Second {
			t.Fatalf("still reading after %v (%d bytes): the answer has no deadline of its own", took, read)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if took := time.Since(start); took < 2*time.Second || read >= size {
		t.Fatalf("closed after %v and %d bytes, want about 2.5 s and the message cut", took, read)
	}
}
