package imapd

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"golang.org/x/crypto/bcrypt"

	"mailfountain.dev/mailfountain/runtime/auth"
	"mailfountain.dev/mailfountain/runtime/mailconf"
	"mailfountain.dev/mailfountain/runtime/maildir"
	"mailfountain.dev/mailfountain/runtime/store"
	"mailfountain.dev/mailfountain/runtime/tlscert"
)

const (
	testDomain   = "ma-societe.fr"
	testUser     = "rene@ma-societe.fr"
	testPassword = "rene-demo"
	otherUser    = "julie@ma-societe.fr"
)

// env is a data directory with a store holding two accounts, and the
// servers over it.
type env struct {
	t        testing.TB
	dir      string
	st       *store.Store
	live     *mailconf.Live
	tls      *tls.Config
	auth     Authenticator
	md       *maildir.Store
	limits   Limits
	metrics  Metrics
	srv      *Server
	addr     string // STARTTLS
	tlsAddr  string // implicit TLS
	stop     context.CancelFunc
	finished chan error
}

func newEnv(t testing.TB) *env {
	t.Helper()
	ctx := context.Background()
	e := &env{t: t, dir: t.TempDir(), live: new(mailconf.Live)}
	st, err := store.Open(ctx, e.dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e.st = st
	// bcrypt at its lowest cost: the default argon2id is slow under -race.
	hash, err := bcrypt.GenerateFromPassword([]byte(testPassword), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	_, err = st.UpdateDirectory(ctx, func(tx *store.DirectoryTx) error {
		if err := tx.PutDomain(ctx, store.Domain{Name: testDomain, Language: "fr"}); err != nil {
			return err
		}
		for _, id := range []string{"rene", "julie"} {
			if err := tx.PutAccount(ctx, store.Account{Domain: testDomain, ID: id, Name: id, PasswordHash: string(hash)}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	certs, err := tlscert.New(e.dir, e.live, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.tls = certs.Config()
	e.auth = auth.NewAuthenticator(st, nil)
	e.limits = Limits{PollInterval: 100 * time.Millisecond, ShutdownGrace: time.Second}
	return e
}

// logger logs to the test's log until it ends.
func (e *env) logger() *slog.Logger {
	w := &testWriter{t: e.t}
	e.t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct {
	t    testing.TB
	mu   sync.Mutex
	done bool
}

func (w *testWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSpace(string(b)))
	}
	return len(b), nil
}

// start opens the maildir store and serves on 127.0.0.1 until the test
// ends or restart.
func (e *env) start() {
	t := e.t
	t.Helper()
	md, err := maildir.New(e.dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := md.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.md = md
	srv, err := New(Config{Settings: e.live, TLS: e.tls, Maildir: md, Mailboxes: e.st, Auth: e.auth, Limits: e.limits, Logger: e.logger(), Metrics: e.metrics})
	if err != nil {
		t.Fatal(err)
	}
	e.srv = srv
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr, e.tlsAddr = ln.Addr().String(), tln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	e.stop = cancel
	e.finished = make(chan error, 2)
	go func() { e.finished <- srv.Serve(ctx, ln) }()
	go func() { e.finished <- srv.ServeTLS(ctx, tln) }()
	t.Cleanup(e.shutdown)
}

// shutdown stops the servers and checks that they return nil in time.
func (e *env) shutdown() {
	if e.stop == nil {
		return
	}
	e.stop()
	e.stop = nil
	for range 2 {
		select {
		case err := <-e.finished:
			if err != nil {
				e.t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			e.t.Fatal("Serve did not return after its context was done")
		}
	}
}

func (e *env) root(id string) string { return e.st.MailboxPath(testDomain, id) }

// setMessageLimit stores settings whose largest message (SMTP's SIZE,
// IMAP's APPENDLIMIT) is n bytes.
func (e *env) setMessageLimit(n int64) {
	settings := mailconf.Default()
	settings.MaxMessageBytes = n
	e.live.Store(settings)
}

// deliver puts a message in rene's inbox as SMTP would.
func (e *env) deliver(msg string) {
	e.t.Helper()
	if err := e.md.Deliver(context.Background(), []string{e.root("rene")}, strings.NewReader(msg)); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) folder(id, name string) *maildir.Folder {
	e.t.Helper()
	mb, err := e.md.Open(e.root(id))
	if err != nil {
		e.t.Fatal(err)
	}
	f, err := mb.Folder(name)
	if err != nil {
		e.t.Fatal(err)
	}
	return f
}

func (e *env) clientTLSConfig() *tls.Config {
	return &tls.Config{InsecureSkipVerify: true}
}

// login returns a client of rene over STARTTLS, logged in.
func (e *env) login(options *imapclient.Options) *imapclient.Client {
	e.t.Helper()
	if options == nil {
		options = &imapclient.Options{}
	}
	options.TLSConfig = e.clientTLSConfig()
	c, err := imapclient.DialStartTLS(e.addr, options)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	if err := c.Login(testUser, testPassword).Wait(); err != nil {
		e.t.Fatal(err)
	}
	return c
}

func (e *env) selectInbox(c *imapclient.Client) *imap.SelectData {
	e.t.Helper()
	data, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		e.t.Fatal(err)
	}
	return data
}

func testMessage(i int, subject, body string) string {
	return fmt.Sprintf("From: Alice Martin <alice@example.org>\r\n"+
		"To: rene@ma-societe.fr\r\n"+
		"Subject: %s\r\n"+
		"Date: Mon, 0%d Mar 2026 10:00:00 +0100\r\n"+
		"Message-ID: <m%d@example.org>\r\n"+
		"Content-Type: text/plain; charset=utf-8\r\n"+
		"\r\n"+
		"%s\r\n", subject, i, i, body)
}

// raw is a line-level IMAP client, for what imapclient hides.
type raw struct {
	t    testing.TB
	conn net.Conn
	r    *bufio.Reader
	n    int

	greeting string
}

func dialRaw(t testing.TB, addr string, implicitTLS bool) *raw {
	t.Helper()
	var conn net.Conn
	var err error
	if implicitTLS {
		conn, err = tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	} else {
		conn, err = net.Dial("tcp", addr)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	r := &raw{t: t, conn: conn, r: bufio.NewReader(conn)}
	r.greeting = r.line()
	return r
}

func (r *raw) line() string {
	r.t.Helper()
	r.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	l, err := r.r.ReadString('\n')
	if err != nil {
		r.t.Fatalf("read: %v (got %q)", err, l)
	}
	return strings.TrimRight(l, "\r\n")
}

// cmd sends a command and returns the untagged lines and the tagged one.
func (r *raw) cmd(format string, args ...any) ([]string, string) {
	r.t.Helper()
	r.n++
	tag := fmt.Sprintf("a%d", r.n)
	if _, err := fmt.Fprintf(r.conn, tag+" "+format+"\r\n", args...); err != nil {
		r.t.Fatal(err)
	}
	return r.answer(tag, 10*time.Second)
}

// loginRaw returns a raw session of rene over implicit TLS, logged in.
func (e *env) loginRaw() *raw {
	e.t.Helper()
	r := dialRaw(e.t, e.tlsAddr, true)
	if _, st := r.cmd("LOGIN %s %s", testUser, testPassword); !strings.HasPrefix(st, "OK") {
		e.t.Fatalf("LOGIN: %s", st)
	}
	return r
}

// ok runs a command that must succeed and returns its untagged lines.
func (r *raw) ok(format string, args ...any) []string {
	r.t.Helper()
	lines, st := r.cmd(format, args...)
	if !strings.HasPrefix(st, "OK") {
		r.t.Fatalf("%s: %s", fmt.Sprintf(format, args...), st)
	}
	return lines
}

// startTLS upgrades the connection.
func (r *raw) startTLS() {
	r.t.Helper()
	if _, st := r.cmd("STARTTLS"); !strings.HasPrefix(st, "OK") {
		r.t.Fatalf("STARTTLS: %s", st)
	}
	conn := tls.Client(r.conn, &tls.Config{InsecureSkipVerify: true})
	if err := conn.Handshake(); err != nil {
		r.t.Fatal(err)
	}
	r.conn, r.r = conn, bufio.NewReader(conn)
}

// closed reports whether the server closed the connection within d,
// returning what it sent meanwhile.
func (r *raw) closed(d time.Duration) (bool, string) {
	r.conn.SetReadDeadline(time.Now().Add(d))
	var got strings.Builder
	for {
		l, err := r.r.ReadString('\n')
		got.WriteString(l)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return false, got.String()
			}
			return true, got.String()
		}
	}
}

// answer reads lines until the one tagged tag, within d; it fails the
// test if none comes (a server waiting for more, as with a refused
// literal, or a closed connection).
func (r *raw) answer(tag string, d time.Duration) (untagged []string, tagged string) {
	r.t.Helper()
	r.conn.SetReadDeadline(time.Now().Add(d))
	for {
		l, err := r.r.ReadString('\n')
		if err != nil {
			r.t.Fatalf("no answer to %s within %v: %v (got %q, untagged %q)", tag, d, err, l, untagged)
		}
		l = strings.TrimRight(l, "\r\n")
		if rest, ok := strings.CutPrefix(l, tag+" "); ok {
			return untagged, rest
		}
		untagged = append(untagged, l)
	}
}
