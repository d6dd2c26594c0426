// Package hostnet reads, and only reads, what the host's network is: the
// address it sends from on its default route and the resolvers of
// /etc/resolv.conf. It changes nothing and sends nothing; the network
// reconciler and mfapply derive facts from it (the box's public address
// when the document names none, the upstream resolvers of a box whose
// WAN is not static).
package hostnet

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
)

// ResolvConf is the resolver configuration of the host.
const ResolvConf = "/etc/resolv.conf"

// Documentation addresses (RFC 5737, RFC 3849) that route addresses are
// asked for: connecting a UDP socket to them picks the source address of
// the route, and sends no packet.
var probes = []struct{ network, addr string }{
	{"udp4", "192.0.2.1:9"},
	{"udp6", "[2001:db8::1]:9"},
}

// RouteAddress is the address the host would send from towards the
// Internet: the source address of its IPv4 default route, else of its
// IPv6 one; invalid when it has neither. It asks the kernel by
// connecting a UDP socket, which sends nothing.
func RouteAddress(ctx context.Context) (netip.Addr, error) {
	var errs []error
	for _, p := range probes {
		a, err := routeSource(ctx, p.network, p.addr)
		if err == nil {
			return a, nil
		}
		errs = append(errs, err)
	}
	return netip.Addr{}, fmt.Errorf("the host's default route: %w", errors.Join(errs...))
}

func routeSource(ctx context.Context, network, addr string) (netip.Addr, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return netip.Addr{}, err
	}
	defer c.Close()
	ua, ok := c.LocalAddr().(*net.UDPAddr)
	if !ok {
		return netip.Addr{}, fmt.Errorf("local address %v of %s", c.LocalAddr(), network)
	}
	a, _ := netip.AddrFromSlice(ua.IP)
	a = a.Unmap().WithZone("")
	if !a.IsValid() || a.IsUnspecified() {
		return netip.Addr{}, fmt.Errorf("no source address towards %s", addr)
	}
	return a, nil
}

// Resolvers are the name servers of the resolver configuration at path
// (ResolvConf), in its order; none when it does not exist. Zones of
// link-local addresses ("fe80::1%eth0") are kept.
func Resolvers(path string) ([]netip.Addr, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read resolvers: %w", err)
	}
	defer f.Close()
	return parseResolvers(f)
}

func parseResolvers(r io.Reader) ([]netip.Addr, error) {
	var out []netip.Addr
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || f[0] != "nameserver" {
			continue
		}
		if a, err := netip.ParseAddr(f[1]); err == nil {
			out = append(out, a.Unmap())
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read resolvers: %w", err)
	}
	return out, nil
}
