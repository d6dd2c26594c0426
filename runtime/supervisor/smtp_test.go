package supervisor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/smtp"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mailfountain.dev/mailfountain/runtime/mailconf"
	"mailfountain.dev/mailfountain/runtime/maildir"
	"mailfountain.dev/mailfountain/runtime/smtpd"
	"mailfountain.dev/mailfountain/runtime/store"
	"mailfountain.dev/mailfountain/schema"
)

// smtpKind is the MX as the daemon runs it, except that its instance is
// built from the document's host name: each change of it builds a new
// smtpd.Server, as a setting that needs a new instance would. (The
// daemon's own SMTP kind has no such setting yet: everything it reads
// from the document is read live.)
func smtpKind(t *testing.T, dir string, builds *atomic.Int32) Kind {
	t.Helper()
	st, err := store.Open(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	_, err = st.UpdateDirectory(t.Context(), func(tx *store.DirectoryTx) error {
		return errors.Join(
			tx.PutDomain(t.Context(), store.Domain{Name: "example.test", Language: "en"}),
			tx.PutAccount(t.Context(), store.Account{Domain: "example.test", ID: "alice", Name: "Alice"}),
		)
	})
	if err != nil {
		t.Fatal(err)
	}
	md, err := maildir.New(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, "tmp")
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	return Kind{
		Name: "smtp",
		Want: func(st *schema.State) (Spec, string) {
			if len(st.Domains) == 0 {
				return Spec{}, "no domain"
			}
			return Spec{Endpoints: []Endpoint{{Name: "smtp", Addr: "127.0.0.1:0", NoKeepAlive: true}}, Config: st.System.Hostname}, ""
		},
		Build: func(ctx context.Context, spec Spec) (Instance, error) {
			builds.Add(1)
			live := &mailconf.Live{}
			set := mailconf.Default()
			set.Hostname = spec.Config
			live.Store(set)
			srv, err := smtpd.New(smtpd.Config{Settings: live, Directory: st, Deliverer: md, TempDir: tmp})
			if err != nil {
				return nil, err
			}
			return mxInstance{srv}, nil
		},
		Drain: time.Minute,
	}
}

type mxInstance struct{ srv *smtpd.Server }

func (m mxInstance) Serve(ctx context.Context, _ string, ln net.Listener) error {
	return m.srv.ServeMX(ctx, ln)
}

// greeting connects and returns the server's 220 line, then quits.
func greeting(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 512)
	n, err := c.Read(buf)
	if err != nil {
		return "", fmt.Errorf("read greeting: %w", err)
	}
	if _, err := c.Write([]byte("QUIT\r\n")); err != nil {
		return "", err
	}
	return strings.TrimSpace(string(buf[:n])), nil
}

// TestReloadKeepsSMTPSession: an SMTP session open on the MX while a
// reload builds a new SMTP server completes its message afterwards, and
// connections made during the reload are all served.
func TestReloadKeepsSMTPSession(t *testing.T) {
	var builds atomic.Int32
	dir := t.TempDir()
	s := newSupervisor(t, Config{}, smtpKind(t, dir, &builds))
	withDomain := func(host string) *schema.State {
		return &schema.State{System: schema.System{Hostname: host}, Domains: []schema.Domain{{Name: "example.test"}}}
	}
	s.Converge(t.Context(), withDomain("one.example.test"))
	addr := endpoint(t, s, "smtp").Addr

	// A session in the middle of a transaction.
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("sender@remote.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("alice@example.test"); err != nil {
		t.Fatal(err)
	}

	// Clients connect all through the reload.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var hosts sync.Map
	errs := make(chan error, 1)
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			g, err := greeting(addr)
			if err != nil || !strings.HasPrefix(g, "220 ") {
				errs <- fmt.Errorf("greeting %q: %v", g, err)
				return
			}
			hosts.Store(strings.Fields(g)[1], true)
		}
	})
	time.Sleep(50 * time.Millisecond)
	s.Converge(t.Context(), withDomain("two.example.test"))
	waitUntil(t, "a client of the new server", func() bool { _, ok := hosts.Load("two.example.test"); return ok })
	close(stop)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatalf("a connection made during the reload: %v", err)
	default:
	}
	if builds.Load() != 2 {
		t.Fatalf("%d smtpd servers built, want 2", builds.Load())
	}
	if got := endpoint(t, s, "smtp").Addr; got != addr {
		t.Fatalf("MX on %s after the reload, want %s", got, addr)
	}

	// The open session finishes its message on the old server.
	w, err := c.Data()
	if err != nil {
		t.Fatalf("DATA after the reload: %v", err)
	}
	fmt.Fprintf(w, "From: sender@remote.test\r\nTo: alice@example.test\r\nSubject: across a reload\r\n\r\nstill delivered\r\n")
	if err := w.Close(); err != nil {
		t.Fatalf("end of DATA after the reload: %v", err)
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the old server to stop once its session ended", func() bool { return draining(s) == 0 })

	// A new session, on the new server, delivers too.
	if err := smtp.SendMail(addr, nil, "sender@remote.test", []string{"alice@example.test"},
		[]byte("From: sender@remote.test\r\nTo: alice@example.test\r\nSubject: after\r\n\r\nafter the reload\r\n")); err != nil {
		t.Fatal(err)
	}
	if g, err := greeting(addr); err != nil || !strings.Contains(g, "two.example.test") {
		t.Fatalf("greeting after the reload %q, %v: want the new server's", g, err)
	}
	inbox, err := filepath.Glob(filepath.Join(dir, "mail", "example.test", "alice", "new", "*"))
	if err != nil || len(inbox) != 2 {
		t.Fatalf("inbox holds %d messages (%v), want 2", len(inbox), err)
	}
}
