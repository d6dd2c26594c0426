package dhcpd

import (
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// clock is a test's clock.
type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

// countMetrics counts the calls.
type countMetrics struct {
	mu           sync.Mutex
	replies      map[string]int
	active, free int
}

func (m *countMetrics) DHCPReply(kind string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.replies[kind]++
}

func (m *countMetrics) DHCPLeases(active, free int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.active, m.free = active, free
}

// count is the number of replies of kind, for a test whose server runs
// in another goroutine.
func (m *countMetrics) count(kind string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.replies[kind]
}

func newTestServer(t *testing.T, dir string, cfg *Config, c *clock) (*Server, *countMetrics) {
	t.Helper()
	live := &Live{}
	live.Publish(cfg)
	m := &countMetrics{replies: map[string]int{}}
	s, err := New(Options{Config: live, Dir: dir, Metrics: m, Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	return s, m
}

func hwAddr(last byte) net.HardwareAddr { return net.HardwareAddr{2, 0, 0, 0, 0, last} }

func request(t *testing.T, kind dhcpv4.MessageType, m net.HardwareAddr, mods ...dhcpv4.Modifier) []byte {
	t.Helper()
	p, err := dhcpv4.New(append([]dhcpv4.Modifier{dhcpv4.WithHwAddr(m), dhcpv4.WithMessageType(kind)}, mods...)...)
	if err != nil {
		t.Fatal(err)
	}
	return p.ToBytes()
}

var (
	boxIP  = net.IPv4(192, 168, 1, 1).To4()
	fromID = dhcpv4.WithOption(dhcpv4.OptServerIdentifier(boxIP))
)

func wantReply(t *testing.T, resp *dhcpv4.DHCPv4, to *net.UDPAddr, kind dhcpv4.MessageType, yiaddr, dest string) {
	t.Helper()
	if resp == nil {
		t.Fatalf("no reply, want %s", kind)
	}
	if resp.MessageType() != kind {
		t.Fatalf("reply %s, want %s: %s", resp.MessageType(), kind, resp.Summary())
	}
	if yiaddr != "" && resp.YourIPAddr.String() != yiaddr {
		t.Errorf("yiaddr %s, want %s", resp.YourIPAddr, yiaddr)
	}
	if to.String() != dest {
		t.Errorf("sent to %s, want %s", to, dest)
	}
}

func TestServerExchange(t *testing.T) {
	c := &clock{now: t0}
	cfg := testConfig("192.168.1.100", "192.168.1.150", Reservation{MAC: hwAddr(9), Addr: netip.MustParseAddr("192.168.1.20"), Name: "imprimante"})
	cfg.Domain = "ma-societe.fr"
	s, m := newTestServer(t, t.TempDir(), cfg, c)

	resp, to := s.handle(request(t, dhcpv4.MessageTypeDiscover, hwAddr(1)))
	wantReply(t, resp, to, dhcpv4.MessageTypeOffer, "192.168.1.100", "255.255.255.255:68")
	for _, x := range []struct{ what, got, want string }{
		{"server id", resp.ServerIdentifier().String(), "192.168.1.1"},
		{"router", ips(resp.Router()), "192.168.1.1"},
		{"dns", ips(resp.DNS()), "192.168.1.1"},
		{"mask", net.IP(resp.SubnetMask()).String(), "255.255.255.0"},
		{"broadcast", resp.BroadcastAddress().String(), "192.168.1.255"},
		{"lease", resp.IPAddressLeaseTime(0).String(), "1h0m0s"},
		{"renewal", resp.IPAddressRenewalTime(0).String(), "30m0s"},
		{"domain", resp.DomainName(), "ma-societe.fr"},
	} {
		if x.got != x.want {
			t.Errorf("offer's %s: %s, want %s", x.what, x.got, x.want)
		}
	}

	// SELECTING: the REQUEST names us and the address offered.
	resp, to = s.handle(request(t, dhcpv4.MessageTypeRequest, hwAddr(1), fromID, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(192, 168, 1, 100)))))
	wantReply(t, resp, to, dhcpv4.MessageTypeAck, "192.168.1.100", "255.255.255.255:68")
	// Another device asking for it: NAK, broadcast.
	resp, to = s.handle(request(t, dhcpv4.MessageTypeRequest, hwAddr(2), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(192, 168, 1, 100)))))
	wantReply(t, resp, to, dhcpv4.MessageTypeNak, "", "255.255.255.255:68")
	// An address of another network: NAK.
	resp, to = s.handle(request(t, dhcpv4.MessageTypeRequest, hwAddr(2), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(10, 0, 0, 7)))))
	wantReply(t, resp, to, dhcpv4.MessageTypeNak, "", "255.255.255.255:68")
	// The client chose another server: silence.
	if resp, _ := s.handle(request(t, dhcpv4.MessageTypeRequest, hwAddr(3), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(192, 168, 1, 2))), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(192, 168, 1, 101))))); resp != nil {
		t.Errorf("answered a REQUEST to another server: %s", resp.Summary())
	}
	// RENEWING: ciaddr, unicast.
	c.now = c.now.Add(40 * time.Minute)
	resp, to = s.handle(request(t, dhcpv4.MessageTypeRequest, hwAddr(1), dhcpv4.WithClientIP(net.IPv4(192, 168, 1, 100))))
	wantReply(t, resp, to, dhcpv4.MessageTypeAck, "192.168.1.100", "192.168.1.100:68")
	// INFORM: the options, no address.
	resp, to = s.handle(request(t, dhcpv4.MessageTypeInform, hwAddr(5), dhcpv4.WithClientIP(net.IPv4(192, 168, 1, 30))))
	wantReply(t, resp, to, dhcpv4.MessageTypeAck, "0.0.0.0", "192.168.1.30:68")
	if resp.IPAddressLeaseTime(0) != 0 || ips(resp.DNS()) != "192.168.1.1" {
		t.Errorf("ack to inform: %s", resp.Summary())
	}
	// A reservation, with its name.
	resp, to = s.handle(request(t, dhcpv4.MessageTypeDiscover, hwAddr(9)))
	wantReply(t, resp, to, dhcpv4.MessageTypeOffer, "192.168.1.20", "255.255.255.255:68")
	if resp.HostName() != "imprimante" {
		t.Errorf("reservation's host name: %q", resp.HostName())
	}
	// RELEASE frees it.
	s.handle(request(t, dhcpv4.MessageTypeRelease, hwAddr(1), fromID, dhcpv4.WithClientIP(net.IPv4(192, 168, 1, 100))))
	if l := s.Leases(); len(l) != 1 || l[0].Active(c.now) {
		t.Errorf("leases after release: %+v", l)
	}
	if m.replies[Offer] != 2 || m.replies[Ack] != 3 || m.replies[Nak] != 2 || m.replies[Dropped] != 1 || m.replies[Released] != 1 {
		t.Errorf("metrics: %v", m.replies)
	}
	if m.active != 0 || m.free != 51 {
		t.Errorf("gauges: %d active, %d free", m.active, m.free)
	}
}

func ips(l []net.IP) string {
	var s []string
	for _, ip := range l {
		s = append(s, ip.String())
	}
	return strings.Join(s, ",")
}

// TestServerRestart: a lease acknowledged is on disk; a new server on
// the same directory gives the client the same address, and refuses it
// to another.
func TestServerRestart(t *testing.T) {
	dir := t.TempDir()
	c := &clock{now: t0}
	cfg := testConfig("192.168.1.100", "192.168.1.150")
	s, _ := newTestServer(t, dir, cfg, c)
	resp, _ := s.handle(request(t, dhcpv4.MessageTypeRequest, hwAddr(1), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(192, 168, 1, 120)))))
	if resp == nil || resp.MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("first request: %v", resp)
	}
	s2, _ := newTestServer(t, dir, cfg, c)
	resp, _ = s2.handle(request(t, dhcpv4.MessageTypeDiscover, hwAddr(1)))
	if resp == nil || resp.YourIPAddr.String() != "192.168.1.120" {
		t.Fatalf("after a restart the client is offered %v", resp)
	}
	resp, _ = s2.handle(request(t, dhcpv4.MessageTypeRequest, hwAddr(2), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(192, 168, 1, 120)))))
	if resp == nil || resp.MessageType() != dhcpv4.MessageTypeNak {
		t.Fatalf("after a restart another client gets the lease: %v", resp)
	}
	// A broken file is an error, not an empty lease table.
	if err := os.WriteFile(filepath.Join(dir, LeaseFile), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Options{Dir: dir}); err == nil {
		t.Error("a broken leases file was accepted")
	}
}

// TestServerSilent: nothing is answered while the server is not
// enabled, nor to what is not a request of an Ethernet device of the
// LAN, nor over the limits.
func TestServerSilent(t *testing.T) {
	c := &clock{now: t0}
	off := testConfig("192.168.1.100", "192.168.1.150")
	off.Enabled = false
	s, _ := newTestServer(t, t.TempDir(), off, c)
	if resp, _ := s.handle(request(t, dhcpv4.MessageTypeDiscover, hwAddr(1))); resp != nil {
		t.Errorf("disabled server answered: %s", resp.Summary())
	}
	s, m := newTestServer(t, t.TempDir(), testConfig("192.168.1.100", "192.168.1.150"), c)
	relayed := request(t, dhcpv4.MessageTypeDiscover, hwAddr(1), dhcpv4.WithGatewayIP(net.IPv4(10, 0, 0, 1)))
	reply := request(t, dhcpv4.MessageTypeDiscover, hwAddr(1))
	reply[0] = byte(dhcpv4.OpcodeBootReply)
	multicast := request(t, dhcpv4.MessageTypeDiscover, net.HardwareAddr{1, 0, 0x5e, 0, 0, 1})
	for name, pkt := range map[string][]byte{
		"empty": nil, "short": reply[:100], "reply": reply, "relayed": relayed, "multicast mac": multicast,
		"no type": func() []byte { p, _ := dhcpv4.New(dhcpv4.WithHwAddr(hwAddr(1))); return p.ToBytes() }(),
	} {
		if resp, _ := s.handle(pkt); resp != nil {
			t.Errorf("%s: answered %s", name, resp.Summary())
		}
	}
	// A flood from one MAC: answered up to the limit.
	n := 0
	for range 1000 {
		if resp, _ := s.handle(request(t, dhcpv4.MessageTypeDiscover, hwAddr(7))); resp != nil {
			n++
		}
	}
	if n != perMAC {
		t.Errorf("flood of one MAC: %d answered, want %d", n, perMAC)
	}
	if m.replies[Dropped] < 1000-perMAC {
		t.Errorf("dropped: %d", m.replies[Dropped])
	}
}

// TestServerFloodOfMACs: a client asking for the whole range (and more)
// with random MACs gets at most the range, past the total limit nothing,
// and the server's memory and leases file stay bounded.
func TestServerFloodOfMACs(t *testing.T) {
	c := &clock{now: t0}
	dir := t.TempDir()
	s, m := newTestServer(t, dir, testConfig("192.168.1.100", "192.168.1.149"), c)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 5000 {
		mac := net.HardwareAddr{2, byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32()), byte(i >> 8), byte(i)}
		a := net.IPv4(192, 168, 1, byte(rng.IntN(256)))
		s.handle(request(t, dhcpv4.MessageTypeRequest, mac, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(a))))
		if i%1000 == 999 {
			c.now = c.now.Add(limitWindow)
		}
	}
	if n := len(s.Leases()); n > 50 {
		t.Errorf("%d leases for a range of 50", n)
	}
	if m.replies[Ack] > 50 || m.active > 50 || m.free != 50-m.active {
		t.Errorf("acks %d, gauges %d active %d free", m.replies[Ack], m.active, m.free)
	}
	if got := m.replies[Dropped]; got != 5*(1000-perWindow) {
		t.Errorf("dropped %d, want %d over the total limit", got, 5*(1000-perWindow))
	}
	fi, err := os.Stat(filepath.Join(dir, LeaseFile))
	if err != nil || fi.Size() > 50*200 {
		t.Errorf("leases file: %v %v", fi, err)
	}
}

// TestHostLabel: a client's host name is kept only as a DNS label.
func TestHostLabel(t *testing.T) {
	long := strings.Repeat("a", 64)
	for in, want := range map[string]string{
		"poste-12": "poste-12", "PC": "PC", "": "", "-x": "", "x-": "", "a.b": "",
		"caf\u00e9": "", "a b": "", "x\u2028y": "", long: "", long[:63]: long[:63],
	} {
		if got := hostLabel(in); got != want {
			t.Errorf("hostLabel(%q) = %q, want %q", in, got, want)
		}
	}
}
