package network

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"mailfountain.dev/mailfountain/hw"
	"mailfountain.dev/mailfountain/runtime/store"
	"mailfountain.dev/mailfountain/runtime/wanlink"
	"mailfountain.dev/mailfountain/schema"
)

// Bridge is the LAN bridge the reconciler creates: the LAN ports in
// router mode (manual 6.2.1.2), every port in server mode, a switch
// (manual 6.2.2.1).
const Bridge = hw.LANBridge

// MetaOwned is the store meta key of what the reconciler created on the
// host (JSON of owned): it removes nothing else.
const MetaOwned = "network_netlink"

// Ports are the box's network ports (its hardware profile).
type Ports struct {
	WAN string
	LAN []string
}

func (p *Ports) all() []string { return append([]string{p.WAN}, p.LAN...) }

// managed lists the links whose addresses and routes the reconciler
// looks at: the ports and the bridge.
func (p *Ports) managed() []string { return append(p.all(), Bridge) }

// ifAddr is an IPv4 address on a link.
type ifAddr struct {
	Link   string       `json:"link"`
	Prefix netip.Prefix `json:"prefix"`
}

func (a ifAddr) String() string { return a.Prefix.String() + " on " + a.Link }

// ifRoute is an IPv4 default route (main table, metric 0).
type ifRoute struct {
	Link    string     `json:"link"`
	Gateway netip.Addr `json:"gateway"`
}

func (r ifRoute) String() string { return "via " + r.Gateway.String() + " on " + r.Link }

// layout is what the box's links should be.
type layout struct {
	Bridged []string   `json:"bridged"` // ports in Bridge
	Alone   []string   `json:"alone"`   // ports in no bridge
	Addrs   []ifAddr   `json:"addrs"`
	Route   *ifRoute   `json:"route,omitempty"`
	Forward bool       `json:"forward"`
	Link    linkSpec   `json:"link"` // the WAN link the watch loop runs
	WAN     schema.WAN `json:"-"`    // what the link is made from
}

// linkSpec names a WAN link: none (static, server mode), the DHCP client
// or PPPoE on a port. Its key tells two apart.
type linkSpec struct {
	Method    string `json:"method,omitempty"` // "", dhcp, pppoe
	Interface string `json:"interface,omitempty"`
	// Account is PPPoE's user name and where its password comes from.
	Account string `json:"account,omitempty"`
}

func (s linkSpec) String() string {
	switch s.Method {
	case "":
		return "none"
	case "dhcp":
		return "dhcp client on " + s.Interface
	}
	return s.Method + " on " + s.Interface + " as " + s.Account
}

// desiredLayout is the layout of the document on ports, with link the
// state of the running WAN link (its address and route are applied when
// it is the document's and up).
func desiredLayout(st *schema.State, p *Ports, running linkSpec, link wanlink.State) layout {
	var l layout
	wan := st.Network.WAN
	if st.Network.Mode == "server" {
		l.Bridged = p.all()
		if a, err := netip.ParsePrefix(wan.Address); err == nil {
			l.Addrs = append(l.Addrs, ifAddr{Bridge, a})
		}
		if g, err := netip.ParseAddr(wan.Gateway); err == nil {
			l.Route = &ifRoute{Bridge, g}
		}
		return l
	}
	l.Bridged = slices.Clone(p.LAN)
	l.Alone = []string{p.WAN}
	l.Forward = true
	if a, err := netip.ParseAddr(st.Network.LAN.Address); err == nil && a.Is4() {
		l.Addrs = append(l.Addrs, ifAddr{Bridge, netip.PrefixFrom(a, 24)})
	}
	switch wan.Method {
	case "static":
		if a, err := netip.ParsePrefix(wan.Address); err == nil {
			l.Addrs = append(l.Addrs, ifAddr{p.WAN, a})
		}
		if g, err := netip.ParseAddr(wan.Gateway); err == nil {
			l.Route = &ifRoute{p.WAN, g}
		}
	case "dhcp", "pppoe":
		l.Link = linkSpec{Method: wan.Method, Interface: p.WAN}
		if wan.Method == "pppoe" {
			l.Link.Account = wan.Username + " " + secretKey(wan.Secret)
		}
		l.WAN = wan
		// The DHCP lease's address and router, on the port; PPPoE's
		// ppp0 is configured by pppd itself.
		if wan.Method == "dhcp" && running == l.Link && link.Up && link.Interface == p.WAN && link.Address.IsValid() {
			l.Addrs = append(l.Addrs, ifAddr{p.WAN, link.Address})
			if link.Gateway.IsValid() {
				l.Route = &ifRoute{p.WAN, link.Gateway}
			}
		}
	}
	return l
}

// secretKey tells a PPPoE password's source apart without holding it:
// the file, or a digest of the inline password.
func secretKey(s schema.Secret) string {
	if s.PasswordFile != "" {
		return "file:" + s.PasswordFile
	}
	if s.Password == "" {
		return ""
	}
	h := sha256.Sum256([]byte(s.Password))
	return fmt.Sprintf("inline:%x", h[:8])
}

// observedLink is what the reconciler sees of a link.
type observedLink struct {
	Exists bool   `json:"exists"`
	Up     bool   `json:"up"`
	Master string `json:"master,omitempty"`
}

// netState is the host's side of the layout, and what the reconciler
// created there.
type netState struct {
	Links    map[string]observedLink `json:"links"`
	Addrs    []ifAddr                `json:"addrs"`  // IPv4, on managed links
	Routes   []ifRoute               `json:"routes"` // IPv4 defaults of the main table via managed links
	Forward  [2]string               `json:"forward"`
	Owned    owned                   `json:"owned"`
	Running  linkSpec                `json:"running"` // the WAN link the watch loop runs
	LinkUp   wanlink.State           `json:"link_state"`
	Watching bool                    `json:"watching"`
}

// owned is what the reconciler created, kept in the store (MetaOwned):
// the addresses and routes it added, whether it created the bridge, the
// WAN link it asked for, and the layout last applied (a change planned
// for an unchanged layout is drift).
type owned struct {
	Addrs  []ifAddr  `json:"addrs,omitempty"`
	Routes []ifRoute `json:"routes,omitempty"`
	Bridge bool      `json:"bridge,omitempty"`
	Link   linkSpec  `json:"link"`
	Layout string    `json:"layout,omitempty"`
}

func loadOwned(ctx context.Context, st *store.Store) (owned, error) {
	var o owned
	if _, err := st.MetaJSON(ctx, MetaOwned, &o); err != nil {
		return owned{}, fmt.Errorf("read what the network reconciler created: %w", err)
	}
	return o, nil
}

func saveOwned(ctx context.Context, st *store.Store, o owned) error {
	b, _ := json.Marshal(o) // plain data: cannot fail
	if err := st.SetMeta(ctx, MetaOwned, string(b)); err != nil {
		return fmt.Errorf("record what the network reconciler created: %w", err)
	}
	return nil
}

// Where IPv4 forwarding is switched, in the current namespace.
var forwardFiles = [2]string{"/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv4/conf/all/forwarding"}

// observeNet reads the links, addresses and default routes of the
// managed links, and the forwarding switches.
func observeNet(ports *Ports) (netState, error) {
	s := netState{Links: map[string]observedLink{}}
	names := map[int]string{}
	links, err := retryDump(netlink.LinkList)
	if err != nil {
		return s, fmt.Errorf("list links: %w", err)
	}
	for _, l := range links {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	// One dump of every address (netlink's per-link listing dumps them
	// all anyway and filters), grouped by link.
	all, err := retryDump(func() ([]netlink.Addr, error) { return netlink.AddrList(nil, netlink.FAMILY_V4) })
	if err != nil {
		return s, fmt.Errorf("list addresses: %w", err)
	}
	byLink := map[int][]netlink.Addr{}
	for _, ad := range all {
		byLink[ad.LinkIndex] = append(byLink[ad.LinkIndex], ad)
	}
	managed := ports.managed()
	for _, l := range links {
		a := l.Attrs()
		if !slices.Contains(managed, a.Name) {
			continue
		}
		s.Links[a.Name] = observedLink{Exists: true, Up: a.Flags&net.FlagUp != 0, Master: names[a.MasterIndex]}
		for _, ad := range byLink[a.Index] {
			if p, ok := prefixOf(ad.IPNet); ok {
				s.Addrs = append(s.Addrs, ifAddr{a.Name, p})
			}
		}
	}
	for _, n := range managed {
		if _, ok := s.Links[n]; !ok {
			s.Links[n] = observedLink{}
		}
	}
	routes, err := retryDump(func() ([]netlink.Route, error) {
		return netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return s, fmt.Errorf("list routes: %w", err)
	}
	for _, r := range routes {
		if r.Dst != nil && !isDefault(r.Dst) {
			continue
		}
		n := names[r.LinkIndex]
		g, ok := netip.AddrFromSlice(r.Gw.To4())
		if !ok || !slices.Contains(managed, n) || r.Priority != 0 {
			continue
		}
		s.Routes = append(s.Routes, ifRoute{n, g})
	}
	for i, f := range forwardFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			return s, fmt.Errorf("read %s: %w", f, err)
		}
		s.Forward[i] = strings.TrimSpace(string(b))
	}
	sortAddrs(s.Addrs)
	return s, nil
}

func isDefault(n *net.IPNet) bool {
	ones, _ := n.Mask.Size()
	return ones == 0
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP.To4())
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a, ones), true
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func sortAddrs(as []ifAddr) {
	slices.SortFunc(as, func(a, b ifAddr) int {
		if c := strings.Compare(a.Link, b.Link); c != 0 {
			return c
		}
		return a.Prefix.Addr().Compare(b.Prefix.Addr())
	})
}

// retryDump retries a netlink dump that the kernel interrupted (the
// tables moved while it was read): the result may be incomplete.
func retryDump[T any](f func() ([]T, error)) ([]T, error) {
	var err error
	for range 5 {
		var out []T
		if out, err = f(); !errors.Is(err, netlink.ErrDumpInterrupted) {
			return out, err
		}
	}
	return nil, err
}

// op is one netlink change.
type op struct {
	kind  opKind
	link  string
	addr  ifAddr
	route ifRoute
	on    bool
	spec  linkSpec
	wan   schema.WAN
}

// netChange is the payload of a planned netlink change: its op, and the
// record of the plan it belongs to.
type netChange struct {
	op  op
	rec *record
}

// record is what a plan makes of the owned record: before is recorded
// before any op (what it will create), after once they all succeeded
// (without what it removed, nor what is gone and no longer wanted).
// Drift is a plan for the layout last applied: the host moved.
type record struct {
	before, after owned
	drift         bool
}

// recordOf is the record of ops, planned from s to want.
func recordOf(s netState, want layout, ops []op) *record {
	layoutKey := want.key()
	rec := &record{drift: s.Owned.Layout == layoutKey}
	b := s.Owned
	b.Addrs, b.Routes = slices.Clone(b.Addrs), slices.Clone(b.Routes)
	for _, o := range ops {
		switch o.kind {
		case opBridge:
			b.Bridge = true
		case opAddrAdd:
			if !slices.Contains(b.Addrs, o.addr) {
				b.Addrs = append(b.Addrs, o.addr)
			}
		case opRouteAdd:
			if !slices.Contains(b.Routes, o.route) {
				b.Routes = append(b.Routes, o.route)
			}
		}
	}
	b.Link = want.Link
	rec.before = b
	a := b
	a.Layout = layoutKey
	a.Addrs = slices.DeleteFunc(slices.Clone(b.Addrs), func(x ifAddr) bool {
		return !slices.Contains(want.Addrs, x) // removed, or gone and not wanted
	})
	a.Routes = slices.DeleteFunc(slices.Clone(b.Routes), func(x ifRoute) bool {
		return want.Route == nil || *want.Route != x
	})
	rec.after = a
	return rec
}

// key identifies a layout, for telling drift from a new layout.
func (l layout) key() string {
	b, _ := json.Marshal(l) // plain data: cannot fail
	return string(b)
}

type opKind int

const (
	opBridge opKind = iota + 1
	opMaster
	opNoMaster
	opUp
	opAddrDel
	opAddrAdd
	opRouteDel
	opRouteAdd
	opForward
	opLink // not a netlink change: which WAN link the watch loop runs
)

// planNet lists the changes that take the observed state to the layout:
// bridge, ports out of and into it, links up, addresses and routes it
// created and no longer wants removed, those it wants added, forwarding,
// the WAN link. What it did not create it never removes.
func planNet(s netState, want layout, ports *Ports) []op {
	var ops []op
	// The WAN link: when the watch loop runs, the link it runs; without
	// it (mfapply), the one last asked for. A running link that goes
	// stops first, while its port still has its address; a new one
	// starts last, once its port is up.
	running := s.Owned.Link
	if s.Watching {
		running = s.Running
	}
	var link []op
	if running != want.Link || s.Owned.Link != want.Link {
		link = []op{{kind: opLink, spec: want.Link, wan: want.WAN}}
	}
	if running.Method != "" {
		ops, link = link, nil
	}
	if !s.Links[Bridge].Exists {
		ops = append(ops, op{kind: opBridge, link: Bridge})
	}
	for _, p := range want.Alone {
		if m := s.Links[p].Master; m != "" && m == Bridge {
			ops = append(ops, op{kind: opNoMaster, link: p})
		}
	}
	for _, p := range want.Bridged {
		if s.Links[p].Master != Bridge {
			ops = append(ops, op{kind: opMaster, link: p})
		}
	}
	for _, n := range append(ports.all(), Bridge) {
		if !s.Links[n].Up {
			ops = append(ops, op{kind: opUp, link: n})
		}
	}
	for _, a := range s.Addrs {
		if slices.Contains(s.Owned.Addrs, a) && !slices.Contains(want.Addrs, a) {
			ops = append(ops, op{kind: opAddrDel, addr: a})
		}
	}
	for _, a := range want.Addrs {
		if !slices.Contains(s.Addrs, a) {
			ops = append(ops, op{kind: opAddrAdd, addr: a})
		}
	}
	for _, r := range s.Routes {
		if slices.Contains(s.Owned.Routes, r) && (want.Route == nil || *want.Route != r) {
			ops = append(ops, op{kind: opRouteDel, route: r})
		}
	}
	if want.Route != nil && !slices.Contains(s.Routes, *want.Route) {
		ops = append(ops, op{kind: opRouteAdd, route: *want.Route})
	}
	on := "0"
	if want.Forward {
		on = "1"
	}
	if s.Forward != [2]string{on, on} {
		ops = append(ops, op{kind: opForward, on: want.Forward})
	}
	return append(ops, link...)
}

// change is how the plan shows an op.
func (o op) change() (string, string, string) {
	switch o.kind {
	case opBridge:
		return "+", "bridge " + o.link, ""
	case opMaster:
		return "~", "link " + o.link, "into " + Bridge
	case opNoMaster:
		return "~", "link " + o.link, "out of " + Bridge
	case opUp:
		return "~", "link " + o.link, "up"
	case opAddrDel:
		return "-", "address " + o.addr.String(), ""
	case opAddrAdd:
		return "+", "address " + o.addr.String(), ""
	case opRouteDel:
		return "-", "default route " + o.route.String(), ""
	case opRouteAdd:
		return "+", "default route " + o.route.String(), ""
	case opForward:
		if o.on {
			return "~", "ip forwarding", "on"
		}
		return "~", "ip forwarding", "off"
	case opLink:
		return "~", "wan link", o.spec.String()
	}
	return "?", "unknown", ""
}

// linkByName finds a link, with what was being done in the error.
func linkByName(name string) (netlink.Link, error) {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("link %s: %w", name, err)
	}
	return l, nil
}

// do carries out one netlink op (not opLink, which is the watch loop's).
func (o op) do() error {
	switch o.kind {
	case opBridge:
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: o.link}}
		if err := netlink.LinkAdd(br); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("create bridge %s: %w", o.link, err)
		}
	case opMaster, opNoMaster:
		l, err := linkByName(o.link)
		if err != nil {
			return err
		}
		if o.kind == opNoMaster {
			err = netlink.LinkSetNoMaster(l)
		} else {
			var br netlink.Link
			if br, err = linkByName(Bridge); err == nil {
				err = netlink.LinkSetMaster(l, br)
			}
		}
		if err != nil {
			return fmt.Errorf("move %s: %w", o.link, err)
		}
	case opUp:
		l, err := linkByName(o.link)
		if err == nil {
			err = netlink.LinkSetUp(l)
		}
		if err != nil {
			return fmt.Errorf("set %s up: %w", o.link, err)
		}
	case opAddrAdd, opAddrDel:
		l, err := linkByName(o.addr.Link)
		if err != nil {
			return err
		}
		a := &netlink.Addr{IPNet: ipNet(o.addr.Prefix)}
		if o.kind == opAddrAdd {
			if err := netlink.AddrAdd(l, a); err != nil && !errors.Is(err, unix.EEXIST) {
				return fmt.Errorf("add address %s: %w", o.addr, err)
			}
		} else if err := netlink.AddrDel(l, a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			return fmt.Errorf("remove address %s: %w", o.addr, err)
		}
	case opRouteAdd, opRouteDel:
		l, err := linkByName(o.route.Link)
		if err != nil {
			return err
		}
		r := &netlink.Route{LinkIndex: l.Attrs().Index, Gw: o.route.Gateway.AsSlice(), Table: unix.RT_TABLE_MAIN,
			Dst: &net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}}
		if o.kind == opRouteAdd {
			if err := netlink.RouteAdd(r); err != nil {
				if errors.Is(err, unix.EEXIST) {
					return fmt.Errorf("add default route %s: a default route the box did not create is in the way: %w", o.route, err)
				}
				return fmt.Errorf("add default route %s: %w", o.route, err)
			}
		} else if err := netlink.RouteDel(r); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("remove default route %s: %w", o.route, err)
		}
	case opForward:
		v := "0\n"
		if o.on {
			v = "1\n"
		}
		for _, f := range forwardFiles {
			if err := os.WriteFile(f, []byte(v), 0o644); err != nil {
				return fmt.Errorf("set ip forwarding %s: %w", filepath.Base(filepath.Dir(f)), err)
			}
		}
	default:
		return fmt.Errorf("op %d is no netlink change", o.kind)
	}
	return nil
}
