package schema

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // time zones do not depend on the host's files

	"mailfountain.dev/mailfountain/hw"
	"mailfountain.dev/mailfountain/runtime/auth"
)

// servedPorts lists the ports the box serves itself on its WAN side; a
// port forward cannot take them (DNS serves only delegated zones, but 53
// is kept in any case so that delegating a zone later breaks no forward).
func servedPorts(proto string) []int {
	switch proto {
	case "tcp":
		return []int{25, 53, 80, 110, 143, 443, 465, 587, 993, 995}
	case "udp":
		return []int{53}
	}
	return nil
}

// checkRules checks what the schema cannot: names used once per domain,
// references that exist, addresses that fit the network, and secrets
// kept out of files that others can read.
func (d *document) checkRules(st *State) Errors {
	var errs Errors
	add := func(path []string, format string, args ...any) {
		errs = append(errs, d.at(path, fmt.Sprintf(format, args...)))
	}
	p := func(elems ...any) []string {
		out := make([]string, len(elems))
		for i, e := range elems {
			out[i] = fmt.Sprint(e)
		}
		return out
	}

	if _, err := time.LoadLocation(st.System.Timezone); err != nil || st.System.Timezone == "" || st.System.Timezone == "Local" {
		add(p("system", "timezone"), "unknown time zone %q; expected an IANA name such as Europe/Paris", st.System.Timezone)
	}

	// Password hashes: the schema checks their form; auth checks that their
	// parameters are ones a login can afford to verify.
	hash := func(h string, path []string) {
		if h != "" {
			if err := auth.ValidateHash(h); err != nil {
				add(path, "%v", err)
			}
		}
	}
	hash(st.System.Admin.PasswordHash, p("system", "admin", "password_hash"))
	for i, m := range st.Managers {
		hash(m.PasswordHash, p("managers", i, "password_hash"))
	}
	for i, dom := range st.Domains {
		if d.cache.rulesOK(i) {
			continue // the domain's own rules passed in an earlier load
		}
		for j, a := range dom.Accounts {
			hash(a.PasswordHash, p("domains", i, "accounts", j, "password_hash"))
		}
	}

	// Models.
	if model, _ := hw.Lookup(st.System.Model); model.SingleDomain() {
		if len(st.Domains) > 1 {
			add(p("domains", 1), "model %s serves one domain; this document has %d (M500 serves several)", st.System.Model, len(st.Domains))
		}
		if len(st.Managers) > 0 {
			add(p("managers"), "model %s has no domain managers (multi-domain models only)", st.System.Model)
		}
	}

	// Domains and the names inside each.
	domainAt := map[string]int{}
	for i, dom := range st.Domains {
		if j, ok := domainAt[dom.Name]; ok {
			add(p("domains", i, "name"), "domain %s is already defined (%s)", dom.Name, d.where(p("domains", j, "name")))
			continue
		}
		domainAt[dom.Name] = i
		if !d.cache.rulesOK(i) {
			errs = append(errs, d.checkDomain(i, &dom)...)
		}
	}

	// Managers.
	loginAt := map[string]int{}
	for i, m := range st.Managers {
		if m.Login == "admin" {
			add(p("managers", i, "login"), `"admin" is the administrator's login; choose another`)
		}
		if j, ok := loginAt[m.Login]; ok {
			add(p("managers", i, "login"), "manager %s is already defined (%s)", m.Login, d.where(p("managers", j, "login")))
		}
		loginAt[m.Login] = i
		for k, name := range m.Domains {
			if _, ok := domainAt[name]; !ok {
				add(p("managers", i, "domains", k), "no domain %s in this document", name)
			}
		}
	}

	errs = append(errs, d.checkNetwork(&st.Network)...)
	if st.Network.Mode == "server" {
		// The DHCP server and port forwards are router features; a server
		// sits behind someone else's router.
		st.Network.DHCP.Enabled = false
	}

	errs = append(errs, d.checkQueue(&st.SMTP.Queue)...)

	// Inline secrets only in files that others cannot read.
	for _, s := range []struct {
		path   []string
		secret *Secret
	}{
		{p("network", "wan", "password"), &st.Network.WAN.Secret},
		{p("smtp", "relay", "password"), relaySecret(st.SMTP.Relay)},
	} {
		if s.secret == nil || s.secret.Password == "" {
			continue
		}
		if s.secret.PasswordFile != "" {
			add(s.path, "give either password or password_file, not both")
		}
		e := d.at(s.path, "")
		if mode, ok := d.modeOf[e.File]; ok && mode&0o077 != 0 {
			add(s.path, "an inline password in a file that others can read (mode %04o): use password_file, or chmod 600 %s", mode, e.File)
		}
	}
	if st.Network.WAN.Method == "pppoe" && st.Network.WAN.Password == "" && st.Network.WAN.PasswordFile == "" {
		add(p("network", "wan"), "PPPoE needs password_file (or an inline password in a file only its owner can read)")
	}
	return errs
}

// checkQueue checks the outbound queue's durations: the schema checks
// their form, this their values (a second is allowed: tests use it).
func (d *document) checkQueue(q *Queue) Errors {
	var errs Errors
	at := func(field string) []string { return []string{"smtp", "queue", field} }
	parse := func(field, v string) (time.Duration, bool) {
		t, err := ParseDuration(v)
		if err != nil {
			errs = append(errs, d.at(at(field), err.Error()))
			return 0, false
		}
		return t, true
	}
	minB, okMin := parse("min_backoff", q.MinBackoff)
	maxB, okMax := parse("max_backoff", q.MaxBackoff)
	life, okLife := parse("lifetime", q.Lifetime)
	parse("delay_warning", q.DelayWarning)
	if okMin && minB <= 0 {
		errs = append(errs, d.at(at("min_backoff"), "min_backoff must be longer than 0 (the wait after a first failure)"))
	}
	if okMin && okMax && minB > 0 && maxB < minB {
		errs = append(errs, d.at(at("max_backoff"), fmt.Sprintf("max_backoff (%s) must not be shorter than min_backoff (%s)", q.MaxBackoff, q.MinBackoff)))
	}
	if okLife && life <= 0 {
		errs = append(errs, d.at(at("lifetime"), "lifetime must be longer than 0 (how long a message is retried before it bounces)"))
	}
	return errs
}

func relaySecret(r *Relay) *Secret {
	if r == nil {
		return nil
	}
	return &r.Secret
}

// where names the file and line of path, for messages that point at a
// first definition.
func (d *document) where(path []string) string {
	e := d.at(path, "")
	return fmt.Sprintf("%s:%d", e.File, e.Line)
}

// checkDomain checks that each name of a domain is used once across
// accounts, aliases, redirections and mailings (manual 6.5.1), and that
// every reference names an account that exists.
func (d *document) checkDomain(i int, dom *Domain) Errors {
	var errs Errors
	base := []string{"domains", strconv.Itoa(i)}
	at := func(elems ...any) []string {
		out := append([]string(nil), base...)
		for _, e := range elems {
			out = append(out, fmt.Sprint(e))
		}
		return out
	}
	type use struct {
		what string
		path []string
	}
	names := map[string]use{}
	claim := func(name, what string, path []string) {
		if prev, ok := names[name]; ok {
			errs = append(errs, d.at(path, fmt.Sprintf("%s@%s is already used by %s (%s); a name is used once per domain", name, dom.Name, prev.what, d.where(prev.path))))
			return
		}
		names[name] = use{what, path}
	}
	accounts := map[string]bool{}
	for j, a := range dom.Accounts {
		accounts[a.ID] = true
		if d.node(at("accounts", j)) != nil { // abuse and postmaster added by the loader are checked below
			claim(a.ID, "account "+a.ID, at("accounts", j, "id"))
		}
	}
	for j, a := range dom.Accounts {
		for k, alias := range a.Aliases {
			claim(alias, "an alias of "+a.ID, at("accounts", j, "aliases", k))
		}
	}
	for j, r := range dom.Redirections {
		claim(r.Address, "redirection "+r.Address, at("redirections", j, "address"))
	}
	for j, m := range dom.Mailings {
		claim(m.Name, "mailing "+m.Name, at("mailings", j, "name"))
	}
	// The required accounts: an explicit account of that name is fine, any
	// other use of the name is not.
	for _, id := range []string{AccountAbuse, AccountPostmaster} {
		if prev, ok := names[id]; ok && prev.what != "account "+id {
			errs = append(errs, d.at(prev.path, fmt.Sprintf("%q is the %s account that every domain has; it cannot be %s", id, id, prev.what)))
		}
	}

	for j, r := range dom.Redirections {
		seen := map[string]bool{}
		for k, to := range r.To {
			path := at("redirections", j, "to", k)
			target := strings.ToLower(to)
			if seen[target] {
				errs = append(errs, d.at(path, fmt.Sprintf("%s is listed twice", to)))
			}
			seen[target] = true
			local, domain, hasAt := strings.Cut(target, "@")
			switch {
			case !hasAt:
				u, ok := names[local]
				if !ok && !accounts[local] {
					errs = append(errs, d.at(path, fmt.Sprintf("no account or alias %s@%s to redirect to", local, dom.Name)))
				} else if ok && (strings.HasPrefix(u.what, "mailing") || strings.HasPrefix(u.what, "redirection")) {
					errs = append(errs, d.at(path, fmt.Sprintf("%s@%s is %s; a redirection goes to accounts or their aliases", local, dom.Name, u.what)))
				}
			case domain == dom.Name:
				if _, ok := names[local]; !ok && !accounts[local] {
					errs = append(errs, d.at(path, fmt.Sprintf("no account or alias %s@%s to redirect to", local, dom.Name)))
				}
			case local == "" || !validDomain(domain):
				errs = append(errs, d.at(path, fmt.Sprintf("expected an account of this domain or an e-mail address; got %q", to)))
			}
		}
	}
	for j, m := range dom.Mailings {
		check := func(id string, path []string, role string) {
			if !accounts[id] {
				errs = append(errs, d.at(path, fmt.Sprintf("%s %s is not an account of %s", role, id, dom.Name)))
			}
		}
		check(m.RepliesTo, at("mailings", j, "replies_to"), "replies_to")
		for k, e := range m.Editors {
			check(e, at("mailings", j, "editors", k), "editor")
		}
		for k, s := range m.Senders {
			check(s, at("mailings", j, "senders", k), "sender")
		}
	}
	return errs
}

func validDomain(s string) bool {
	if len(s) > 253 || !strings.Contains(s, ".") {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

// checkNetwork checks addresses against each other: the LAN of router mode
// (a fixed /24, manual 6.2.1.2), its DHCP range and forwards, and the
// static configuration that server mode needs (manual 6.2.2.2).
func (d *document) checkNetwork(n *Network) Errors {
	var errs Errors
	add := func(path []string, format string, args ...any) {
		errs = append(errs, d.at(path, fmt.Sprintf(format, args...)))
	}
	var wanNet netip.Prefix
	if n.WAN.Method == "static" {
		pfx, err := netip.ParsePrefix(n.WAN.Address)
		gw, gerr := netip.ParseAddr(n.WAN.Gateway)
		if err == nil && gerr == nil {
			wanNet = pfx.Masked()
			switch {
			case pfx.Bits() < 31 && (pfx.Addr() == wanNet.Addr() || pfx.Addr() == broadcast(wanNet)):
				add([]string{"network", "wan", "address"}, "%s is the network or broadcast address of %s", pfx.Addr(), wanNet)
			case !wanNet.Contains(gw):
				add([]string{"network", "wan", "gateway"}, "gateway %s is outside %s", gw, wanNet)
			case gw == pfx.Addr():
				add([]string{"network", "wan", "gateway"}, "the gateway cannot be the box's own address")
			}
		}
	}

	if n.Mode == "server" {
		if n.WAN.Method != "static" {
			add([]string{"network", "wan", "method"}, "server mode needs a static address, gateway and DNS (manual 6.2.2.2); got method %s", n.WAN.Method)
		}
		if len(n.Forwards) > 0 {
			add([]string{"network", "forwards"}, "port forwards are a router-mode feature; in server mode, forward ports on your own router (manual 6.2.2.3)")
		}
		if d.node([]string{"network", "dhcp", "enabled"}) != nil && n.DHCP.Enabled {
			add([]string{"network", "dhcp", "enabled"}, "the DHCP server runs in router mode only")
		}
		return errs
	}

	lanAddr, err := netip.ParseAddr(n.LAN.Address)
	if err != nil {
		return errs
	}
	lan := netip.PrefixFrom(lanAddr, 24).Masked()
	lanPath := []string{"network", "lan", "address"}
	if !lanAddr.IsPrivate() {
		add(lanPath, "the LAN address must be private (10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16); got %s", lanAddr)
	} else if lanAddr == lan.Addr() || lanAddr == broadcast(lan) {
		add(lanPath, "%s is the network or broadcast address of the LAN %s", lanAddr, lan)
	}
	if wanNet.IsValid() && wanNet.Overlaps(lan) {
		add(lanPath, "the LAN %s overlaps the WAN %s", lan, wanNet)
	}

	if n.DHCP.Enabled {
		start, serr := netip.ParseAddr(n.DHCP.Start)
		end, eerr := netip.ParseAddr(n.DHCP.End)
		if serr == nil && eerr == nil {
			inside := true
			for _, x := range []struct {
				field string
				a     netip.Addr
			}{{"start", start}, {"end", end}} {
				if !lan.Contains(x.a) || x.a == lan.Addr() || x.a == broadcast(lan) {
					add([]string{"network", "dhcp", x.field}, "%s is not a host address of the LAN %s", x.a, lan)
					inside = false
				}
			}
			switch {
			case !inside:
			case end.Less(start):
				add([]string{"network", "dhcp", "end"}, "the range ends (%s) before it starts (%s)", end, start)
			case !lanAddr.Less(start) && !end.Less(lanAddr):
				add([]string{"network", "dhcp", "start"}, "the range %s-%s includes the box's own address %s", start, end, lanAddr)
			}
		}
	}

	errs = append(errs, d.checkDHCP(&n.DHCP, lan, lanAddr)...)

	taken := map[string]int{} // "tcp/8080" -> forward index
	for i, f := range n.Forwards {
		path := []string{"network", "forwards", strconv.Itoa(i)}
		if to, err := netip.ParseAddr(f.To); err == nil {
			switch {
			case !lan.Contains(to) || to == lan.Addr() || to == broadcast(lan):
				add(append(path, "to"), "%s is not a host of the LAN %s", to, lan)
			case to == lanAddr:
				add(append(path, "to"), "%s is the box itself", to)
			}
		}
		protos := []string{f.Protocol}
		if f.Protocol == "all" {
			protos = []string{"tcp", "udp"}
		}
		for _, proto := range protos {
			for _, served := range servedPorts(proto) {
				if served == f.Port {
					add(append(path, "port"), "%s/%d is served by the box itself and cannot be forwarded", proto, f.Port)
				}
			}
			key := proto + "/" + strconv.Itoa(f.Port)
			if j, ok := taken[key]; ok {
				add(append(path, "port"), "%s is already forwarded (%s)", key, d.where([]string{"network", "forwards", strconv.Itoa(j), "port"}))
				break
			}
			taken[key] = i
		}
	}
	return errs
}

// Bounds of network.dhcp.lease_time: a client renews at half of it, so a
// shorter lease is mostly renewal traffic; a longer one keeps an address
// of a device long gone from the range.
const (
	MinLeaseTime = 2 * time.Minute
	MaxLeaseTime = 30 * 24 * time.Hour
)

// checkDHCP checks the DHCP server's lease time and reservations (its
// range is checked with the LAN, above): each reservation a host of the
// LAN other than the box, each MAC and address reserved once.
func (d *document) checkDHCP(c *DHCP, lan netip.Prefix, lanAddr netip.Addr) Errors {
	var errs Errors
	at := func(elems ...string) []string { return append([]string{"network", "dhcp"}, elems...) }
	add := func(path []string, format string, args ...any) {
		errs = append(errs, d.at(path, fmt.Sprintf(format, args...)))
	}
	if lt, err := ParseDuration(c.LeaseTime); err != nil {
		add(at("lease_time"), "%v", err)
	} else if lt < MinLeaseTime || lt > MaxLeaseTime {
		add(at("lease_time"), "lease_time %s is out of bounds: from %s to %s (30d)", c.LeaseTime, MinLeaseTime, MaxLeaseTime)
	}
	macAt := map[string]int{}
	addrAt := map[netip.Addr]int{}
	for i, r := range c.Reservations {
		idx := strconv.Itoa(i)
		if mac, err := net.ParseMAC(r.MAC); err == nil {
			switch {
			case len(mac) != 6:
				add(at("reservations", idx, "mac"), "%s is not an Ethernet address", r.MAC)
			case mac[0]&1 != 0:
				add(at("reservations", idx, "mac"), "%s is a multicast address, not a device's", r.MAC)
			default:
				if j, ok := macAt[mac.String()]; ok {
					add(at("reservations", idx, "mac"), "MAC %s is already reserved (%s)", r.MAC, d.where(at("reservations", strconv.Itoa(j), "mac")))
				} else {
					macAt[mac.String()] = i
				}
			}
		}
		a, err := netip.ParseAddr(r.Address)
		if err != nil {
			continue
		}
		switch {
		case !lan.Contains(a) || a == lan.Addr() || a == broadcast(lan):
			add(at("reservations", idx, "address"), "%s is not a host address of the LAN %s", a, lan)
		case a == lanAddr:
			add(at("reservations", idx, "address"), "%s is the box's own address", a)
		default:
			if j, ok := addrAt[a]; ok {
				add(at("reservations", idx, "address"), "%s is already reserved (%s)", a, d.where(at("reservations", strconv.Itoa(j), "address")))
			} else {
				addrAt[a] = i
			}
		}
	}
	return errs
}

func broadcast(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v |= host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
