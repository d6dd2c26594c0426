package smtpd

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
)

// TestConnectionPools: strangers holding every connection of the MX do
// not keep the box's users from sending on 587 and 465, which have a pool
// of their own; each pool refuses beyond its limit.
func TestConnectionPools(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) {
		c.MaxConnections = 3
		c.MaxSubmissionConnections = 2
	})
	var idle []*rawClient
	for range 3 {
		rc := dialRaw(t, e.mx)
		rc.expectReply("220 ")
		idle = append(idle, rc)
	}
	wantRefused(t, e.mx, true)

	c := e.submit("alice@example.test", alicePassword)
	if err := send(c, "alice@example.test", []string{"bob@example.test"}, messageFrom("alice@example.test", "pool-587")); err != nil {
		t.Fatalf("submission on 587 while the MX is full: %v", err)
	}
	cs := e.client(e.subs, implicitTLS)
	if err := cs.Auth(sasl.NewPlainClient("", "alice@example.test", alicePassword)); err != nil {
		t.Fatalf("AUTH on 465 while the MX is full: %v", err)
	}
	if err := send(cs, "alice@example.test", []string{"bob@example.test"}, messageFrom("alice@example.test", "pool-465")); err != nil {
		t.Fatalf("submission on 465 while the MX is full: %v", err)
	}
	e.wantMailbox("example.test", "bob", 2)

	// Now submission is full too, 587 and 465 together; on 465 there is
	// no TLS session to say 421 in.
	wantRefused(t, e.sub, true)
	wantRefused(t, e.subs, false)

	// A slot frees once the server has seen the close, in its own pool.
	idle[0].expect("QUIT", "221 ")
	idle[0].closed()
	waitAdmitted(t, e.mx)
	wantRefused(t, e.sub, true)
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
	waitAdmitted(t, e.sub)
}

// TestConnectionPoolsPerIP: each pool bounds the connections of one
// client address, and a client at the MX's bound still submits.
func TestConnectionPoolsPerIP(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) {
		c.MaxConnectionsPerIP = 2
		c.MaxSubmissionConnectionsPerIP = 1
		c.Resolver = fakeResolver{}
	})
	// Loopback clients are exempt from the bounds per address: these
	// listeners report their clients as coming from elsewhere.
	const crowd, other = "192.0.2.7", "198.51.100.9"
	mx := e.serveAs(e.srv.ServeMX, crowd)
	mxOther := e.serveAs(e.srv.ServeMX, other)
	sub := e.serveAs(e.srv.ServeSubmission, crowd)

	for range 2 {
		dialRaw(t, mx).expectReply("220 ")
	}
	wantRefused(t, mx, true)
	dialRaw(t, mxOther).expectReply("220 ")

	rc := dialRaw(t, sub)
	rc.expectReply("220 ")
	rc.expect("EHLO client.test", "250 ")
	wantRefused(t, sub, true)
	if logs := e.logs.String(); !strings.Contains(logs, "too many connections from your address") {
		t.Errorf("no refusal per address logged:\n%s", logs)
	}
}

// wantRefused checks that a connection to addr is refused: 421 4.7.0 and
// close, or a close without a word.
func wantRefused(t *testing.T, addr string, reply bool) {
	t.Helper()
	lines := dialRaw(t, addr).closed()
	if reply && (len(lines) != 1 || !strings.HasPrefix(lines[0], "421 4.7.0 ")) {
		t.Fatalf("connection to %s over the limit: %q, want 421 4.7.0 and close", addr, lines)
	}
	if !reply && len(lines) != 0 {
		t.Fatalf("connection to %s over the limit: %q, want a close", addr, lines)
	}
}

// waitAdmitted waits until a connection to addr is admitted (greeted, or
// not closed at once on 465).
func waitAdmitted(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		rc := dialRaw(t, addr)
		line, _ := rc.r.ReadString('\n')
		if strings.HasPrefix(line, "220 ") {
			rc.conn.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no connection to %s admitted after one closed: %q", addr, line)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// serveAs serves a listener of e's server whose clients seem to come
// from remote, and returns its address.
func (e *env) serveAs(serve func(context.Context, net.Listener) error, remote string) string {
	e.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	from := &net.TCPAddr{IP: net.ParseIP(remote), Port: 40000}
	go func() { errc <- serve(ctx, remoteListener{Listener: ln, remote: from}) }()
	e.t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			e.t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String()
}

// remoteListener reports every connection it accepts as coming from
// remote.
type remoteListener struct {
	net.Listener
	remote net.Addr
}

func (l remoteListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return remoteConn{Conn: c, remote: l.remote}, nil
}

type remoteConn struct {
	net.Conn
	remote net.Addr
}

func (c remoteConn) RemoteAddr() net.Addr { return c.remote }

// TestSubmissionAuthTimeout: a submission client that does not log in
// within AuthTimeout of its connection is told 421 and cut off, however
// busy it keeps itself, so strangers cannot hold submission's slots for a
// session lifetime; one that logs in has its whole lifetime. The MX has
// no such bound.
func TestSubmissionAuthTimeout(t *testing.T) {
	t.Parallel()
	const authTimeout = 700 * time.Millisecond
	e := newEnv(t, func(c *Config) { c.AuthTimeout = authTimeout })

	// Busy without logging in: NOOPs every 100 ms, each well within the
	// idle timeout.
	for _, tt := range []struct {
		name string
		addr string
	}{{"587", e.sub}, {"mx", e.mx}} {
		rc := dialRaw(t, tt.addr)
		start := time.Now()
		rc.expectReply("220 ")
		rc.ehlo()
		var last string
		for time.Since(start) < 3*authTimeout {
			rc.send("NOOP")
			lines, err := rc.tryReply()
			if err != nil || len(lines) == 0 {
				break
			}
			last = lines[len(lines)-1]
			if !strings.HasPrefix(last, "250 ") {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		took := time.Since(start)
		if tt.addr == e.mx {
			if !strings.HasPrefix(last, "250 ") {
				t.Fatalf("MX: %q after %v, want the session going on", last, took)
			}
			continue
		}
		if !strings.HasPrefix(last, "421 4.4.2 ") || took < authTimeout/2 || took > 2*authTimeout {
			t.Fatalf("%s: %q after %v, want 421 4.4.2 at about %v", tt.name, last, took, authTimeout)
		}
		rc.closed()
	}

	// On 465 the bound holds from the connection, TLS handshake included.
	cs := e.client(e.subs, implicitTLS)
	time.Sleep(authTimeout + 300*time.Millisecond)
	if err := cs.Noop(); err == nil {
		t.Fatal("465: NOOP answered after the auth timeout, want the connection closed")
	}

	// Logged in: the session goes on past AuthTimeout.
	c := e.submit("alice@example.test", alicePassword)
	time.Sleep(authTimeout + 300*time.Millisecond)
	if err := send(c, "alice@example.test", []string{"bob@example.test"}, messageFrom("alice@example.test", "after-auth")); err != nil {
		t.Fatalf("a message after the auth timeout, logged in: %v", err)
	}
	e.wantMailbox("example.test", "bob", 1)
}
