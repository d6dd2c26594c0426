package pop3d

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"mailfountain.dev/mailfountain/runtime/auth"
	"mailfountain.dev/mailfountain/runtime/mailconf"
	"mailfountain.dev/mailfountain/runtime/maildir"
	"mailfountain.dev/mailfountain/runtime/store"

	"mailfountain.dev/mailfountain/runtime/testenv"
)

// The accounts of every test environment.
const (
	testDomain    = "example.org"
	alice         = "alice@example.org"
	alicePassword = "alice-secret"
	bob           = "bob@example.org"
	bobPassword   = "bob pass with spaces"
)

// mailBackend is the mailboxes a test server reads: the real maildir
// store, or for a few edge cases a fake.
type mailBackend interface {
	deliver(t *testing.T, root string, msgs ...string)
	snapshot(t *testing.T, root string) *maildir.Snapshot
	expunge(t *testing.T, root string, uids ...uint32)
	opener() func(root string) (inbox, error)
}

type envOptions struct {
	legacy     bool // LegacyPlainAuth
	fake       *fakeStore
	cfg        func(*Config)
	authLimits auth.Limits
}

// env is a POP3 server on 127.0.0.1 (plain and implicit TLS) over a real
// data store and real authenticator.
type env struct {
	t        *testing.T
	st       *store.Store
	live     *mailconf.Live
	mail     mailBackend
	srv      *Server
	addr     string // port 110's stand-in
	tlsAddr  string // port 995's stand-in
	certs    *x509.CertPool
	logs     *testenv.Buffer
	cancel   context.CancelFunc
	served   chan error
	serveErr []error
}

func newEnv(t *testing.T, o envOptions) *env {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	hash := func(pw string) string {
		// bcrypt at its lowest cost keeps the tests fast; the
		// authenticator checks it like any hash.
		h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		return string(h)
	}
	if _, err := st.UpdateDirectory(ctx, func(tx *store.DirectoryTx) error {
		return errors.Join(
			tx.PutDomain(ctx, store.Domain{Name: testDomain, Language: "en"}),
			tx.PutAccount(ctx, store.Account{Domain: testDomain, ID: "alice", Name: "Alice", PasswordHash: hash(alicePassword)}),
			tx.PutAccount(ctx, store.Account{Domain: testDomain, ID: "bob", Name: "Bob", PasswordHash: hash(bobPassword)}),
		)
	}); err != nil {
		t.Fatal(err)
	}

	e := &env{t: t, st: st, live: &mailconf.Live{}, logs: &testenv.Buffer{}}
	s := mailconf.Default()
	s.Hostname = "mail.example.org"
	s.LegacyPlainAuth = o.legacy
	e.live.Store(s)

	var md *maildir.Store
	if o.fake != nil {
		e.mail = o.fake
	} else {
		md, err = maildir.New(dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := md.Recover(ctx); err != nil {
			t.Fatal(err)
		}
		e.mail = realMail{md}
	}

	tlsCfg, pool := testTLS(t)
	e.certs = pool
	cfg := Config{
		Settings:         e.live,
		TLS:              tlsCfg,
		Maildir:          md,
		Mailboxes:        st,
		Auth:             auth.NewAuthenticatorLimits(st, nil, o.authLimits),
		Logger:           slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		AuthFailureDelay: 10 * time.Millisecond,
		AuthIdleTimeout:  10 * time.Second,
		ShutdownGrace:    2 * time.Second,
	}
	if o.cfg != nil {
		o.cfg(&cfg)
	}
	if o.fake != nil {
		e.srv, err = newServer(cfg, o.fake.opener())
	} else {
		e.srv, err = New(cfg)
	}
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr, e.tlsAddr = ln.Addr().String(), tln.Addr().String()
	sctx, cancel := context.WithCancel(ctx)
	e.cancel = cancel
	e.served = make(chan error, 2)
	go func() { e.served <- e.srv.Serve(sctx, ln) }()
	go func() { e.served <- e.srv.ServeTLS(sctx, tln) }()
	t.Cleanup(func() {
		e.stop()
		if t.Failed() {
			t.Logf("server log:\n%s", e.logs.String())
		}
	})
	return e
}

// stop cancels the servers and checks that both return nil in time.
func (e *env) stop() {
	e.t.Helper()
	e.cancel()
	for len(e.serveErr) < 2 {
		select {
		case err := <-e.served:
			e.serveErr = append(e.serveErr, err)
			if err != nil {
				e.t.Errorf("Serve returned %v, want nil", err)
			}
		case <-time.After(10 * time.Second):
			e.t.Fatal("Serve did not return after its context was done")
		}
	}
}

// root is the mailbox of an account of the test domain.
func (e *env) root(id string) string { return e.st.MailboxPath(testDomain, id) }

func (e *env) deliver(id string, msgs ...string) { e.mail.deliver(e.t, e.root(id), msgs...) }

func (e *env) snapshot(id string) *maildir.Snapshot { return e.mail.snapshot(e.t, e.root(id)) }

// waitUnlocked waits until no session holds a mailbox: a dropped client's
// session ends when the server reads the end of its connection.
func (e *env) waitUnlocked() {
	e.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		e.srv.mu.Lock()
		n := len(e.srv.locked)
		e.srv.mu.Unlock()
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatal("mailboxes still locked")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type realMail struct{ md *maildir.Store }

func (m realMail) deliver(t *testing.T, root string, msgs ...string) {
	t.Helper()
	for _, msg := range msgs {
		if err := m.md.Deliver(context.Background(), []string{root}, strings.NewReader(msg)); err != nil {
			t.Fatal(err)
		}
	}
}

func (m realMail) folder(t *testing.T, root string) *maildir.Folder {
	t.Helper()
	mb, err := m.md.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	f, err := mb.Folder(maildir.Inbox)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (m realMail) snapshot(t *testing.T, root string) *maildir.Snapshot {
	t.Helper()
	snap, err := m.folder(t, root).Sync()
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

func (m realMail) expunge(t *testing.T, root string, uids ...uint32) {
	t.Helper()
	if err := m.folder(t, root).Expunge(uids); err != nil {
		t.Fatal(err)
	}
}

func (m realMail) opener() func(string) (inbox, error) { return nil }

// fakeStore is an in-memory stand-in for the maildir store, for the edge
// cases the real one cannot be made to show (failing expunges, opens).
type fakeStore struct {
	mu          sync.Mutex
	folders     map[string]*fakeFolder
	failOpen    error
	failExpunge error
}

type fakeFolder struct {
	s       *fakeStore
	nextUID uint32
	msgs    []fakeMsg
}

type fakeMsg struct {
	maildir.Message
	data string
}

func newFakeStore() *fakeStore { return &fakeStore{folders: map[string]*fakeFolder{}} }

func (s *fakeStore) folder(root string) *fakeFolder {
	f := s.folders[root]
	if f == nil {
		f = &fakeFolder{s: s, nextUID: 1}
		s.folders[root] = f
	}
	return f
}

func (s *fakeStore) deliver(t *testing.T, root string, msgs ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.folder(root)
	for _, m := range msgs {
		uid := f.nextUID
		f.nextUID++
		f.msgs = append(f.msgs, fakeMsg{maildir.Message{UID: uid, Key: "fake" + big.NewInt(int64(uid)).String(), Size: int64(len(m))}, m})
	}
}

func (s *fakeStore) snapshot(t *testing.T, root string) *maildir.Snapshot {
	snap, err := s.opener()(root)
	if err != nil {
		t.Fatal(err)
	}
	sn, err := snap.Sync()
	if err != nil {
		t.Fatal(err)
	}
	return sn
}

func (s *fakeStore) expunge(t *testing.T, root string, uids ...uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.folder(root)
	f.msgs = slices.DeleteFunc(f.msgs, func(m fakeMsg) bool { return slices.Contains(uids, m.UID) })
}

func (s *fakeStore) opener() func(string) (inbox, error) {
	return func(root string) (inbox, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.failOpen != nil {
			return nil, s.failOpen
		}
		return s.folder(root), nil
	}
}

func (f *fakeFolder) Sync() (*maildir.Snapshot, error) {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	snap := &maildir.Snapshot{UIDValidity: 1, UIDNext: f.nextUID}
	for _, m := range f.msgs {
		mm := m.Message
		mm.Flags = slices.Clone(m.Flags)
		snap.Messages = append(snap.Messages, mm)
	}
	return snap, nil
}

func (f *fakeFolder) Open(uid uint32) (io.ReadCloser, error) {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	for _, m := range f.msgs {
		if m.UID == uid {
			return io.NopCloser(strings.NewReader(m.data)), nil
		}
	}
	return nil, maildir.ErrNoMessage
}

// StoreFlags knows only FlagsAdd, all POP3 uses.
func (f *fakeFolder) StoreFlags(uids []uint32, op maildir.FlagOp, flags []string) (map[uint32][]string, error) {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	if op != maildir.FlagsAdd {
		return nil, errors.New("fakeFolder: only FlagsAdd")
	}
	out := map[uint32][]string{}
	for i := range f.msgs {
		if m := &f.msgs[i]; slices.Contains(uids, m.UID) {
			m.Flags = slices.Sorted(slices.Values(slices.Concat(m.Flags, flags)))
			m.Flags = slices.Compact(m.Flags)
			out[m.UID] = m.Flags
		}
	}
	return out, nil
}

func (f *fakeFolder) Expunge(uids []uint32) error {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	if f.s.failExpunge != nil {
		return f.s.failExpunge
	}
	f.msgs = slices.DeleteFunc(f.msgs, func(m fakeMsg) bool { return slices.Contains(uids, m.UID) })
	return nil
}

// testTLS makes a self-signed certificate for 127.0.0.1.
func testTLS(t *testing.T) (*tls.Config, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "mail.example.org"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"mail.example.org"},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		MinVersion:   tls.VersionTLS12,
	}, pool
}

// client is a raw POP3 connection for scripted exchanges.
type client struct {
	t    *testing.T
	e    *env
	conn net.Conn
	r    *bufio.Reader
}

func (e *env) dial(addr string) *client {
	e.t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { conn.Close() })
	c := &client{t: e.t, e: e, conn: conn, r: bufio.NewReader(conn)}
	if addr == e.tlsAddr {
		c.startTLS()
	}
	return c
}

// dialGreeted dials the plain port and reads the greeting.
func (e *env) dialGreeted() *client {
	e.t.Helper()
	c := e.dial(e.addr)
	if g := c.line(); !strings.HasPrefix(g, "+OK mail.example.org ") {
		e.t.Fatalf("greeting %q", g)
	}
	return c
}

func (c *client) startTLS() {
	c.t.Helper()
	tc := tls.Client(c.conn, &tls.Config{RootCAs: c.e.certs, ServerName: "127.0.0.1"})
	tc.SetDeadline(time.Now().Add(5 * time.Second))
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("TLS handshake: %v", err)
	}
	tc.SetDeadline(time.Time{})
	c.conn = tc
	c.r = bufio.NewReader(tc)
}

func (c *client) write(s string) {
	c.t.Helper()
	c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c.conn, s); err != nil {
		c.t.Fatalf("write %q: %v", s, err)
	}
}

func (c *client) line() string {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	l, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v (after %q)", err, l)
	}
	if !strings.HasSuffix(l, "\r\n") {
		c.t.Fatalf("line %q does not end in CRLF", l)
	}
	return strings.TrimSuffix(l, "\r\n")
}

// closed checks that the server closed the connection.
func (c *client) closed() {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	rest, err := io.ReadAll(c.r)
	if err != nil && !isReset(err) {
		c.t.Fatalf("connection not closed: %v (read %q)", err, rest)
	}
	if len(rest) > 0 {
		c.t.Fatalf("read %q before the end, want nothing more", rest)
	}
}

func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && !op.Timeout()
}

// login logs in with USER and PASS.
func (c *client) login(user, pass string) string {
	c.t.Helper()
	c.write("USER " + user + "\r\n")
	if l := c.line(); !strings.HasPrefix(l, "+OK") {
		c.t.Fatalf("USER: %q", l)
	}
	c.write("PASS " + pass + "\r\n")
	return c.line()
}
