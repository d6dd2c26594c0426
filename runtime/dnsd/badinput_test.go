package dnsd

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/miekg/dns"

	"mailfountain.dev/mailfountain/runtime/dnszone"
)

// rawUDP sends raw from src and returns the answer, or nil if none
// comes within wait.
func (e *env) rawUDP(src netip.Addr, raw []byte, wait time.Duration) []byte {
	e.t.Helper()
	c, err := net.DialUDP("udp", &net.UDPAddr{IP: src.AsSlice()}, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(e.addr)))
	if err != nil {
		e.t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(raw); err != nil {
		e.t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 65535)
	n, err := c.Read(buf)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return nil
	}
	if err != nil {
		e.t.Fatal(err)
	}
	return buf[:n]
}

func packed(t *testing.T, m *dns.Msg) []byte {
	t.Helper()
	raw, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// TestBadInput: what is not a proper query gets FORMERR or NOTIMP, or
// nothing; the server goes on answering.
func TestBadInput(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{Recursor: &staticRecursor{}}, testSet(t, serial, false))
	q := func(edit func(m *dns.Msg)) []byte {
		m := new(dns.Msg)
		m.SetQuestion("mail.ma-societe.fr.", dns.TypeA)
		m.Id = 0x4242
		edit(m)
		return packed(t, m)
	}
	header := func(flags, qd uint16) []byte {
		b := make([]byte, 12)
		binary.BigEndian.PutUint16(b, 0x4242)
		binary.BigEndian.PutUint16(b[2:], flags)
		binary.BigEndian.PutUint16(b[4:], qd)
		return b
	}
	cases := []struct {
		name  string
		raw   []byte
		rcode int // -1: no answer
	}{
		{"empty", nil, -1},
		{"shorter than a header", []byte{0x42, 0x42, 0, 0}, -1},
		{"a response (QR=1)", q(func(m *dns.Msg) { m.Response = true }), -1},
		{"no question", header(0x0100, 0), dns.RcodeFormatError},
		{"a question announced, none there", header(0x0100, 1), dns.RcodeFormatError},
		{"garbage after a header", append(header(0x0100, 1), 0xff, 0xff, 0xff, 0xff, 0xff), dns.RcodeFormatError},
		{"two questions", q(func(m *dns.Msg) {
			m.Question = append(m.Question, dns.Question{Name: "web.ma-societe.fr.", Qtype: dns.TypeA, Qclass: dns.ClassINET})
		}), dns.RcodeFormatError},
		{"UPDATE: NOTIMP", q(func(m *dns.Msg) { m.Opcode = dns.OpcodeUpdate }), dns.RcodeNotImplemented},
		{"NOTIFY to us: NOTIMP", q(func(m *dns.Msg) { m.Opcode = dns.OpcodeNotify }), dns.RcodeNotImplemented},
		{"IQUERY: NOTIMP", q(func(m *dns.Msg) { m.Opcode = dns.OpcodeIQuery }), dns.RcodeNotImplemented},
		{"opcode 15: NOTIMP", q(func(m *dns.Msg) { m.Opcode = 15 }), dns.RcodeNotImplemented},
		{"class CH: REFUSED", q(func(m *dns.Msg) { m.Question[0].Qclass = dns.ClassCHAOS }), dns.RcodeRefused},
		{"qtype OPT: NOTIMP", q(func(m *dns.Msg) { m.Question[0].Qtype = dns.TypeOPT }), dns.RcodeNotImplemented},
	}
	for _, src := range []netip.Addr{wanClient, lanClient} {
		for _, c := range cases {
			t.Run(src.String()+"/"+c.name, func(t *testing.T) {
				wait := 2 * time.Second
				if c.rcode < 0 {
					wait = 200 * time.Millisecond
				}
				out := e.rawUDP(src, c.raw, wait)
				if c.rcode < 0 {
					if out != nil {
						t.Fatalf("an answer: %x", out)
					}
					return
				}
				if out == nil {
					t.Fatal("no answer")
				}
				r := new(dns.Msg)
				if err := r.Unpack(out); err != nil {
					t.Fatalf("answer unpack: %v", err)
				}
				if r.Id != 0x4242 || !r.Response || r.Rcode != c.rcode {
					t.Fatalf("id %x QR %v rcode %s, want 4242 true %s", r.Id, r.Response, dns.RcodeToString[r.Rcode], dns.RcodeToString[c.rcode])
				}
			})
		}
	}
	// Still answering, over UDP and TCP.
	for _, transport := range []string{"udp", "tcp"} {
		if r := e.query(transport, wanClient, "mail.ma-societe.fr.", dns.TypeA); r.Rcode != dns.RcodeSuccess {
			t.Errorf("after bad input over %s: %v", transport, r)
		}
	}
	// Over TCP, a message that says it is longer than it is: the
	// connection is closed, nothing is answered.
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte{0, 200, 1, 2, 3})
	c.(*net.TCPConn).CloseWrite()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if b, err := io.ReadAll(c); len(b) != 0 || err != nil {
		t.Errorf("short TCP message: read %x, %v; want EOF", b, err)
	}
}

// TestTCPLimits: connections per address, idle connections, queries per
// connection.
func TestTCPLimits(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{MaxTCPConnectionsPerIP: 2, TCPIdleTimeout: 300 * time.Millisecond, MaxTCPQueries: 3}, testSet(t, serial, false))
	dial := func() *dns.Conn {
		t.Helper()
		c, err := dns.DialTimeout("tcp", e.addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	ask := func(c *dns.Conn) error {
		m := new(dns.Msg)
		m.SetQuestion("mail.ma-societe.fr.", dns.TypeA)
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if err := c.WriteMsg(m); err != nil {
			return err
		}
		r, err := c.ReadMsg()
		if err == nil && r.Rcode != dns.RcodeSuccess {
			t.Errorf("answer %v", r)
		}
		return err
	}
	// released waits until the server has let go of the connections
	// of the previous steps.
	released := func(t *testing.T) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for e.srv.tcpConns.Open() > 0 {
			if time.Now().After(deadline) {
				t.Fatalf("%d connections still counted", e.srv.tcpConns.Open())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	t.Run("queries per connection", func(t *testing.T) {
		c := dial()
		for i := range 3 {
			if err := ask(c); err != nil {
				t.Fatalf("query %d: %v", i+1, err)
			}
		}
		if err := ask(c); err == nil {
			t.Fatal("a fourth query answered")
		}
	})
	t.Run("connections per address", func(t *testing.T) {
		released(t)
		a, b := dial(), dial()
		if err := ask(a); err != nil {
			t.Fatal(err)
		}
		if err := ask(b); err != nil {
			t.Fatal(err)
		}
		if err := ask(dial()); err == nil {
			t.Fatal("a third connection answered")
		}
		if n := e.met.Counts()["refused dns "+"too many connections from your address, try later"]; n != 1 {
			t.Errorf("metrics: %v", e.met.Counts())
		}
		a.Close()
		b.Close()
	})
	t.Run("idle", func(t *testing.T) {
		released(t)
		c := dial()
		start := time.Now()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.ReadMsg(); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("idle connection: %v, want it closed by the server", err)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("idle connection closed after %v", took)
		}
	})
}

// TestServeStops: the Serve methods return when their context is done,
// having closed what they serve.
func TestServeStops(t *testing.T) {
	t.Parallel()
	s := New(Config{})
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 3)
	go func() { done <- s.ServeUDP(ctx, pc) }()
	go func() { done <- s.ServeTCP(ctx, ln) }()
	go func() { done <- s.Run(ctx) }()
	// A connection held open does not keep ServeTCP.
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	time.Sleep(50 * time.Millisecond)
	cancel()
	for range 3 {
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("returned %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a Serve did not return")
		}
	}
	if _, err := pc.WriteTo([]byte{0}, pc.LocalAddr()); err == nil {
		t.Error("the PacketConn is still open")
	}
}

// TestAnswerFromQueriedAddress: a socket bound to every address answers
// from the address it was asked at (here 127.0.0.5, not 127.0.0.1, which
// the kernel would pick): a client takes no answer from another address.
func TestAnswerFromQueriedAddress(t *testing.T) {
	t.Parallel()
	live := &dnszone.Live{}
	live.Publish(testSet(t, serial, false))
	s := New(Config{Zones: live, RRL: &RRL{}})
	for _, bind := range []struct{ network, addr string }{{"udp4", "0.0.0.0:0"}, {"udp", "[::]:0"}} {
		t.Run(bind.addr, func(t *testing.T) {
			pc, err := net.ListenPacket(bind.network, bind.addr)
			if err != nil {
				t.Skipf("no %s socket here: %v", bind.addr, err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- s.ServeUDP(ctx, pc) }()
			defer func() {
				cancel()
				if err := <-done; err != nil {
					t.Error(err)
				}
			}()
			port := pc.LocalAddr().(*net.UDPAddr).Port
			for _, to := range []string{"127.0.0.1", "127.0.0.5"} {
				m := new(dns.Msg)
				m.SetQuestion("mail.ma-societe.fr.", dns.TypeA)
				cl := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
				r, _, err := cl.Exchange(m, net.JoinHostPort(to, strconv.Itoa(port)))
				if err != nil {
					t.Fatalf("asked at %s: %v", to, err)
				}
				if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
					t.Errorf("asked at %s: %v", to, r)
				}
			}
		})
	}
}

// wrappedConn is a PacketConn that is not a *net.UDPConn.
type wrappedConn struct{ net.PacketConn }

// TestServeUDPAnyPacketConn: a PacketConn other than *net.UDPConn is
// served one datagram at a time.
func TestServeUDPAnyPacketConn(t *testing.T) {
	t.Parallel()
	live := &dnszone.Live{}
	live.Publish(testSet(t, serial, false))
	s := New(Config{Zones: live})
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.ServeUDP(ctx, wrappedConn{pc}) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	for _, name := range []string{"mail.ma-societe.fr.", "web.ma-societe.fr."} {
		m := new(dns.Msg)
		m.SetQuestion(name, dns.TypeA)
		r, _, err := (&dns.Client{Timeout: 2 * time.Second}).Exchange(m, pc.LocalAddr().String())
		if err != nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
			t.Errorf("%s: %v %v", name, r, err)
		}
	}
}
