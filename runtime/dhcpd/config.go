package dhcpd

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"mailfountain.dev/mailfountain/runtime/live"
)

// Config is what the server hands out, as the DHCP reconciler publishes
// it. It is never changed once published.
type Config struct {
	// Enabled: without it the server answers nothing.
	Enabled bool
	// Server is the box's LAN address with the LAN's prefix (a /24): the
	// server identifier, router and DNS server handed out; only clients
	// of this prefix are served.
	Server netip.Prefix
	// Start and End bound the range of dynamic addresses, both included.
	Start, End netip.Addr
	// LeaseTime is how long a lease lasts.
	LeaseTime time.Duration
	// Domain is the domain name handed out (option 15); "" for none.
	Domain string
	// Reservations are the fixed addresses, by MAC.
	Reservations []Reservation
}

// Reservation is a fixed address for one device.
type Reservation struct {
	MAC  net.HardwareAddr
	Addr netip.Addr
	// Name is the host name handed to the device (option 12); "" for
	// none.
	Name string
}

// Check says whether c can be served: the range and the reservations are
// hosts of the LAN, other than the box (the schema's rules check the
// document the same way).
func (c *Config) Check() error {
	if !c.Enabled {
		return nil
	}
	lan := c.Server.Masked()
	if !c.Server.Addr().Is4() || c.Server.Bits() < 8 || c.Server.Bits() > 30 {
		return fmt.Errorf("dhcp: the LAN %s is not an IPv4 network the server can serve", c.Server)
	}
	host := func(a netip.Addr) bool {
		return lan.Contains(a) && a != lan.Addr() && a != broadcast(lan) && a != c.Server.Addr()
	}
	if !host(c.Start) || !host(c.End) || c.End.Less(c.Start) {
		return fmt.Errorf("dhcp: the range %s-%s is not one of hosts of the LAN %s", c.Start, c.End, lan)
	}
	if c.LeaseTime < time.Minute {
		return fmt.Errorf("dhcp: lease time %s is too short", c.LeaseTime)
	}
	for _, r := range c.Reservations {
		if len(r.MAC) != 6 || !host(r.Addr) {
			return fmt.Errorf("dhcp: reservation %s %s is not a host of the LAN %s", r.MAC, r.Addr, lan)
		}
	}
	return nil
}

// String describes c for plans and logs.
func (c *Config) String() string {
	if c == nil || !c.Enabled {
		return "off"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "range %s-%s, lease %s, server %s", c.Start, c.End, c.LeaseTime, c.Server)
	if c.Domain != "" {
		fmt.Fprintf(&b, ", domain %s", c.Domain)
	}
	if len(c.Reservations) > 0 {
		var rs []string
		for _, r := range c.Reservations {
			s := r.MAC.String() + "=" + r.Addr.String()
			if r.Name != "" {
				s += "(" + r.Name + ")"
			}
			rs = append(rs, s)
		}
		slices.Sort(rs)
		fmt.Fprintf(&b, ", reservations %s", strings.Join(rs, " "))
	}
	return b.String()
}

// Live is the Config being served, as the DHCP reconciler last
// published it (Publish, Load). The zero Live holds no Config: the
// server answers nothing.
type Live = live.Value[Config]

func broadcast(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v |= uint32(1)<<(32-p.Bits()) - 1
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
