package dhcpd

import (
	"net"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// FuzzHandle feeds the server arbitrary datagrams: it never panics, and
// whatever it answers is a reply of the LAN with an address of its own.
func FuzzHandle(f *testing.F) {
	seed := func(kind dhcpv4.MessageType, mods ...dhcpv4.Modifier) {
		p, err := dhcpv4.New(append([]dhcpv4.Modifier{dhcpv4.WithHwAddr(net.HardwareAddr{2, 0, 0, 0, 0, 1}), dhcpv4.WithMessageType(kind)}, mods...)...)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(p.ToBytes())
	}
	req := dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(192, 168, 1, 100)))
	id := dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(192, 168, 1, 1)))
	seed(dhcpv4.MessageTypeDiscover)
	seed(dhcpv4.MessageTypeRequest, req, id)
	seed(dhcpv4.MessageTypeRequest, dhcpv4.WithClientIP(net.IPv4(192, 168, 1, 100)))
	seed(dhcpv4.MessageTypeDecline, req, id)
	seed(dhcpv4.MessageTypeRelease, dhcpv4.WithClientIP(net.IPv4(192, 168, 1, 100)), id)
	seed(dhcpv4.MessageTypeInform, dhcpv4.WithClientIP(net.IPv4(192, 168, 1, 30)))
	f.Add([]byte{})
	f.Add(make([]byte, 300))

	c := &clock{now: t0}
	live := &Live{}
	live.Publish(testConfig("192.168.1.100", "192.168.1.110", reserve(9, "192.168.1.20")))
	s, err := New(Options{Config: live, Dir: f.TempDir(), Now: c.Now})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, pkt []byte) {
		c.now = c.now.Add(time.Second)
		resp, to := s.handle(pkt)
		if resp == nil {
			return
		}
		if to == nil || resp.OpCode != dhcpv4.OpcodeBootReply {
			t.Fatalf("reply %s to %v", resp.Summary(), to)
		}
		if y := resp.YourIPAddr; y != nil && !y.IsUnspecified() && !(y.To4() != nil && y.To4()[0] == 192 && y.To4()[1] == 168 && y.To4()[2] == 1) {
			t.Fatalf("handed out %s", y)
		}
		if len(s.pool.byAddr) > 254 || len(s.pool.offers) > 254 || len(s.limit.byMAC) > perWindow {
			t.Fatalf("unbounded: %d leases, %d offers, %d MACs counted", len(s.pool.byAddr), len(s.pool.offers), len(s.limit.byMAC))
		}
	})
}
