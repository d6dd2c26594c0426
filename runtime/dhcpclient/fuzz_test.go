package dhcpclient

import (
	"net"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// FuzzACK: whatever a server sends, the state and the timers made of it
// hold together: no panic, an IPv4 address, T1 ≤ T2 ≤ expiry.
func FuzzACK(f *testing.F) {
	for _, mods := range [][]dhcpv4.Modifier{
		{dhcpv4.WithLeaseTime(120), dhcpv4.WithNetmask(net.CIDRMask(24, 32)), dhcpv4.WithRouter(net.IPv4(192, 0, 2, 1)), dhcpv4.WithDNS(net.IPv4(192, 0, 2, 53))},
		{dhcpv4.WithOption(dhcpv4.OptRenewTimeValue(time.Hour)), dhcpv4.WithOption(dhcpv4.OptRebindingTimeValue(time.Minute))},
		{dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionSubnetMask, []byte{255, 0, 255}))},
	} {
		m, err := dhcpv4.New(append([]dhcpv4.Modifier{dhcpv4.WithMessageType(dhcpv4.MessageTypeAck), dhcpv4.WithYourIP(net.IPv4(192, 0, 2, 10))}, mods...)...)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(m.ToBytes())
	}
	t0 := time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, b []byte) {
		ack, err := dhcpv4.FromBytes(b)
		if err != nil {
			return
		}
		s := StateOf(ack)
		if s.Address.IsValid() && !s.Address.Addr().Is4() {
			t.Errorf("address %v", s.Address)
		}
		t1, t2, exp := Times(ack, t0)
		if t1.After(t2) || t2.After(exp) {
			t.Errorf("T1 %v, T2 %v, expiry %v", t1, t2, exp)
		}
	})
}
