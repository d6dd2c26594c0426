package smtpd

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
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"golang.org/x/crypto/bcrypt"

	"mailfountain.dev/mailfountain/runtime/auth"
	"mailfountain.dev/mailfountain/runtime/mailconf"
	"mailfountain.dev/mailfountain/runtime/maildir"
	"mailfountain.dev/mailfountain/runtime/store"

	"mailfountain.dev/mailfountain/runtime/testenv"
)

const (
	testHost      = "mx.example.test"
	alicePassword = "alice-Secret-42"
	bobPassword   = "bob-Secret-42"
	davePassword  = "dave-Secret-42"
)

// bcrypt at its minimum cost keeps the tests fast; auth checks it as it
// does argon2id.
func hashPassword(t testing.TB, pw string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// populate writes the test directory: two domains, accounts, aliases,
// redirections (nested, cyclic, pointing outside, dangling) and a
// mailing list.
func populate(t testing.TB, st *store.Store) {
	t.Helper()
	ctx := context.Background()
	_, err := st.UpdateDirectory(ctx, func(tx *store.DirectoryTx) error {
		return errors.Join(
			tx.PutDomain(ctx, store.Domain{Name: "example.test", Language: "en"}),
			tx.PutDomain(ctx, store.Domain{Name: "other.test", Language: "fr"}),
			tx.PutAccount(ctx, store.Account{Domain: "example.test", ID: "alice", Name: "Alice", PasswordHash: hashPassword(t, alicePassword)}),
			tx.PutAccount(ctx, store.Account{Domain: "example.test", ID: "bob", Name: "Bob", PasswordHash: hashPassword(t, bobPassword)}),
			tx.PutAccount(ctx, store.Account{Domain: "example.test", ID: "carol", Name: "Carol"}),
			tx.PutAccount(ctx, store.Account{Domain: "example.test", ID: "postmaster", Name: "postmaster"}),
			tx.PutAccount(ctx, store.Account{Domain: "example.test", ID: "abuse", Name: "abuse"}),
			tx.PutAccount(ctx, store.Account{Domain: "other.test", ID: "dave", Name: "Dave", PasswordHash: hashPassword(t, davePassword)}),
			tx.PutAccount(ctx, store.Account{Domain: "other.test", ID: "postmaster", Name: "postmaster"}),
			tx.PutAlias(ctx, store.Alias{Domain: "example.test", Alias: "boss", Account: "alice"}),
			tx.PutAlias(ctx, store.Alias{Domain: "example.test", Alias: "sales", Account: "bob"}),
			tx.PutRedirection(ctx, store.Redirection{Domain: "example.test", Address: "team", Targets: []string{"alice@example.test", "sales@example.test"}}),
			tx.PutRedirection(ctx, store.Redirection{Domain: "example.test", Address: "all", Targets: []string{"team@example.test", "boss@example.test", "carol@example.test", "dave@other.test"}}),
			tx.PutRedirection(ctx, store.Redirection{Domain: "example.test", Address: "loop1", Targets: []string{"loop2@example.test", "carol@example.test"}}),
			tx.PutRedirection(ctx, store.Redirection{Domain: "example.test", Address: "loop2", Targets: []string{"loop1@example.test", "alice@example.test"}}),
			tx.PutRedirection(ctx, store.Redirection{Domain: "example.test", Address: "fwd", Targets: []string{"alice@example.test", "someone@remote.test"}}),
			tx.PutRedirection(ctx, store.Redirection{Domain: "example.test", Address: "dangling", Targets: []string{"ghost@example.test"}}),
			tx.PutRedirection(ctx, store.Redirection{Domain: "example.test", Address: "tolist", Targets: []string{"news@example.test", "bob@example.test"}}),
			tx.PutMailing(ctx, store.Mailing{Domain: "example.test", Name: "news", DisplayName: "News", RepliesTo: "alice", Senders: []string{"alice"}}),
		)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// testTLS returns a server TLS configuration with a self-signed
// certificate made for the test.
func testTLS(t testing.TB) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: testHost},
		DNSNames:     []string{testHost, "localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
	}
}

// clientTLS trusts any certificate: the test's is self-signed.
var clientTLS = &tls.Config{InsecureSkipVerify: true}

// env is a running server over a real store, with its three listeners.
type env struct {
	t                    testing.TB
	st                   *store.Store
	live                 *mailconf.Live
	srv                  *Server
	cfg                  Config
	logs                 *testenv.Buffer
	mx, sub, subs        string
	cancel               context.CancelFunc
	stopOnce             sync.Once
	mxErr, subErr, ssErr chan error
}

// newEnv starts a server; edit may change its Config.
func newEnv(t testing.TB, edit func(*Config)) *env {
	t.Helper()
	return newEnvIn(t, t.TempDir(), edit)
}

// newEnvIn starts a server whose data directory (store, mailboxes) is dir.
func newEnvIn(t testing.TB, dir string, edit func(*Config)) *env {
	t.Helper()
	st, err := store.Open(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	populate(t, st)
	live := &mailconf.Live{}
	set := mailconf.Default()
	set.Hostname = testHost
	set.Domain = "example.test"
	live.Store(set)
	logs := &testenv.Buffer{}
	tmp := filepath.Join(dir, "tmp")
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Settings:  live,
		TLS:       testTLS(t),
		Directory: st,
		Deliverer: newDeliverer(t, dir),
		Auth:      auth.NewAuthenticator(st, nil),
		Logger:    slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		TempDir:   tmp,
	}
	if edit != nil {
		edit(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, st: st, live: live, srv: srv, cfg: cfg, logs: logs,
		mxErr: make(chan error, 1), subErr: make(chan error, 1), ssErr: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	e.mx = e.listen(func(ln net.Listener) error { return srv.ServeMX(ctx, ln) }, e.mxErr)
	e.sub = e.listen(func(ln net.Listener) error { return srv.ServeSubmission(ctx, ln) }, e.subErr)
	e.subs = e.listen(func(ln net.Listener) error { return srv.ServeSubmissions(ctx, ln) }, e.ssErr)
	t.Cleanup(func() {
		e.stop()
		if os.Getenv("SMTPD_TEST_LOGS") != "" {
			t.Logf("server log:\n%s", logs)
		}
	})
	return e
}

func (e *env) listen(serve func(net.Listener) error, errc chan error) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.t.Fatal(err)
	}
	go func() { errc <- serve(ln) }()
	return ln.Addr().String()
}

// stop cancels the servers and checks that each returns nil, in time.
func (e *env) stop() {
	e.t.Helper()
	e.stopOnce.Do(e.stopServers)
}

func (e *env) stopServers() {
	e.cancel()
	for _, errc := range []chan error{e.mxErr, e.subErr, e.ssErr} {
		select {
		case err, ok := <-errc:
			if ok && err != nil {
				e.t.Errorf("Serve returned %v, want nil", err)
			}
			close(errc)
		case <-time.After(15 * time.Second):
			e.t.Fatal("Serve did not return after its context was done")
		}
	}
}

// mailbox returns the messages in the inbox of domain/id, sorted by
// content.
func (e *env) mailbox(domain, id string) []string {
	e.t.Helper()
	root := e.st.MailboxPath(domain, id)
	var msgs []string
	for _, sub := range []string{"new", "cur"} {
		ents, err := os.ReadDir(filepath.Join(root, sub))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			e.t.Fatal(err)
		}
		for _, ent := range ents {
			b, err := os.ReadFile(filepath.Join(root, sub, ent.Name()))
			if err != nil {
				e.t.Fatal(err)
			}
			msgs = append(msgs, string(b))
		}
	}
	slices.Sort(msgs)
	return msgs
}

// waitMailbox waits (briefly) for n messages in a mailbox: the reply to
// DATA comes after the delivery, so there is no waiting in practice.
func (e *env) wantMailbox(domain, id string, n int) []string {
	e.t.Helper()
	msgs := e.mailbox(domain, id)
	if len(msgs) != n {
		e.t.Fatalf("mailbox %s@%s holds %d messages, want %d", id, domain, len(msgs), n)
	}
	return msgs
}

// tlsMode is how a test client secures its connection.
type tlsMode int

const (
	plain tlsMode = iota
	startTLS
	implicitTLS
)

// client dials addr with go-smtp's client and says EHLO (as "client.test",
// or as go-smtp's "localhost" with STARTTLS).
func (e *env) client(addr string, mode tlsMode) *smtp.Client {
	e.t.Helper()
	var c *smtp.Client
	var err error
	switch mode {
	case implicitTLS:
		c, err = smtp.DialTLS(addr, clientTLS)
	case startTLS:
		c, err = smtp.DialStartTLS(addr, clientTLS)
	default:
		c, err = smtp.Dial(addr)
	}
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	if mode != startTLS {
		if err := c.Hello("client.test"); err != nil {
			e.t.Fatal(err)
		}
	}
	return c
}

// submit logs in on the submission port (STARTTLS) and returns the
// client.
func (e *env) submit(user, password string) *smtp.Client {
	e.t.Helper()
	c := e.client(e.sub, startTLS)
	if err := c.Auth(sasl.NewPlainClient("", user, password)); err != nil {
		e.t.Fatalf("AUTH PLAIN %s: %v", user, err)
	}
	return c
}

// send sends one message in a transaction of c.
func send(c *smtp.Client, from string, to []string, msg string) error {
	if err := c.Mail(from, nil); err != nil {
		return err
	}
	for _, r := range to {
		if err := c.Rcpt(r, nil); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := io.WriteString(w, msg); err != nil {
		return err
	}
	return w.Close()
}

// wantCode checks that err is an SMTP error of that code and enhanced
// code ("5.1.1").
func wantCode(t testing.TB, err error, code int, enhanced string) {
	t.Helper()
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		t.Fatalf("got %v, want SMTP error %d %s", err, code, enhanced)
	}
	got := fmt.Sprintf("%d.%d.%d", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
	if se.Code != code || got != enhanced {
		t.Fatalf("got %d %s %q, want %d %s", se.Code, got, se.Message, code, enhanced)
	}
}

func testMessage(subject string) string {
	return messageFrom("sender@remote.test", subject)
}

// messageFrom is testMessage with another From field: a submission's must
// be an address of the account.
func messageFrom(from, subject string) string {
	return "From: " + from + "\r\nTo: someone@example.test\r\nSubject: " + subject +
		"\r\nMessage-ID: <" + subject + "@remote.test>\r\n\r\nHello.\r\n"
}

// rawClient speaks SMTP line by line, to see exact replies.
type rawClient struct {
	t    testing.TB
	conn net.Conn
	r    *bufio.Reader
}

func dialRaw(t testing.TB, addr string) *rawClient {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &rawClient{t: t, conn: conn, r: bufio.NewReader(conn)}
	c.conn.SetDeadline(time.Now().Add(20 * time.Second))
	return c
}

// dialData dials addr and goes as far as DATA with a message from
// a@remote.test to alice@example.test: the server has replied 354.
func dialData(t testing.TB, addr string) *rawClient {
	t.Helper()
	rc := dialRaw(t, addr)
	rc.reply()
	rc.expect("EHLO client.test", "250 ")
	rc.expect("MAIL FROM:<a@remote.test>", "250 ")
	rc.expect("RCPT TO:<alice@example.test>", "250 ")
	rc.expect("DATA", "354 ")
	return rc
}

// ehlo sends EHLO and returns the lines of the reply, joined.
func (c *rawClient) ehlo() string {
	c.t.Helper()
	c.send("EHLO client.test")
	return strings.Join(c.reply(), "\n")
}

// reply reads one reply and returns its lines; the last one has the code.
func (c *rawClient) reply() []string {
	c.t.Helper()
	lines, err := c.tryReply()
	if err != nil {
		c.t.Fatalf("read reply: %v (after %q)", err, lines)
	}
	return lines
}

func (c *rawClient) tryReply() ([]string, error) {
	var lines []string
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			return lines, err
		}
		line = strings.TrimRight(line, "\r\n")
		lines = append(lines, line)
		if len(line) < 4 || line[3] != '-' {
			return lines, nil
		}
	}
}

// cmd sends a line and returns the last line of the reply.
func (c *rawClient) cmd(line string) string {
	c.t.Helper()
	c.send(line)
	r := c.reply()
	return r[len(r)-1]
}

func (c *rawClient) send(line string) {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, line+"\r\n"); err != nil {
		c.t.Fatalf("send %q: %v", line, err)
	}
}

// expectReply reads a reply and checks the start of its last line.
func (c *rawClient) expectReply(want string) string {
	c.t.Helper()
	r := c.reply()
	got := r[len(r)-1]
	if !strings.HasPrefix(got, want) {
		c.t.Fatalf("got %q, want %q...", got, want)
	}
	return got
}

// expect sends a line and checks the start of the reply's last line.
func (c *rawClient) expect(line, want string) string {
	c.t.Helper()
	got := c.cmd(line)
	if !strings.HasPrefix(got, want) {
		c.t.Fatalf("%q: got %q, want %q...", line, got, want)
	}
	return got
}

// closed checks that the server closes the connection (after any reply
// lines, which it returns).
func (c *rawClient) closed() []string {
	c.t.Helper()
	var lines []string
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || strings.Contains(err.Error(), "reset") {
				return lines
			}
			c.t.Fatalf("connection not closed: %v (after %q)", err, lines)
		}
		lines = append(lines, strings.TrimRight(line, "\r\n"))
	}
}

// newDeliverer returns the maildir.Store of dataDir, recovered.
func newDeliverer(t testing.TB, dataDir string) Deliverer {
	t.Helper()
	md, err := maildir.New(dataDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := md.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	return md
}
