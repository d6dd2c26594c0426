package mailauth

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/emersion/go-msgauth/authres"
)

// Results of SPF (RFC 7208 §2.6), DKIM and DMARC, as RFC 8601 spells them.
const (
	resNone      authres.ResultValue = authres.ResultNone
	resNeutral   authres.ResultValue = authres.ResultNeutral
	resPass      authres.ResultValue = authres.ResultPass
	resFail      authres.ResultValue = authres.ResultFail
	resSoftFail  authres.ResultValue = authres.ResultSoftFail
	resTempError authres.ResultValue = authres.ResultTempError
	resPermError authres.ResultValue = authres.ResultPermError
)

// Processing limits of RFC 7208 §4.6.4.
const (
	maxDNSLookups  = 10 // include, a, mx, ptr, exists, redirect
	maxVoidLookups = 2  // lookups giving NXDOMAIN or no records
	maxMXNames     = 10 // MX records whose addresses an "mx" looks up
	maxPTRNames    = 10 // PTR names a "ptr" validates
)

// spfOutcome is the SPF verdict on one SMTP transaction.
type spfOutcome struct {
	result   authres.ResultValue
	identity string // "mailfrom" or "helo"
	sender   string // MAIL FROM, or postmaster@HELO
	domain   string // the domain checked: DMARC aligns it with From
	reason   string
}

// spfChecker evaluates check_host() for one transaction; the counters
// span the includes and redirects of the whole evaluation.
type spfChecker struct {
	r            *Resolver
	ip           netip.Addr
	sender       string
	local        string
	senderDomain string
	helo         string
	lookups      int
	voids        int
}

// checkSPF checks the MAIL FROM identity, or the HELO identity when MAIL
// FROM is empty (RFC 7208 §2.4).
func checkSPF(ctx context.Context, r *Resolver, ip netip.Addr, helo, mailFrom string) spfOutcome {
	ip = ip.Unmap()
	helo = strings.TrimSuffix(strings.TrimSpace(helo), ".")
	c := &spfChecker{r: r, ip: ip, helo: helo}
	out := spfOutcome{identity: "mailfrom"}
	if mailFrom == "" {
		out.identity = "helo"
		c.local, c.senderDomain = "postmaster", helo
	} else {
		c.local, c.senderDomain = "", mailFrom
		if i := strings.LastIndexByte(mailFrom, '@'); i >= 0 {
			c.local, c.senderDomain = mailFrom[:i], mailFrom[i+1:]
		}
		if c.local == "" {
			c.local = "postmaster"
		}
	}
	c.senderDomain = strings.TrimSuffix(c.senderDomain, ".")
	c.sender = c.local + "@" + c.senderDomain
	out.sender, out.domain = c.sender, strings.ToLower(c.senderDomain)
	if mailFrom == "" {
		out.sender = helo
	}
	if !ip.IsValid() {
		out.result, out.reason = resNone, "no client address"
		return out
	}
	out.result, out.reason = c.checkHost(ctx, c.senderDomain)
	return out
}

// checkHost is check_host() of RFC 7208 §4.
func (c *spfChecker) checkHost(ctx context.Context, domain string) (authres.ResultValue, string) {
	domain = strings.TrimSuffix(domain, ".")
	if !isSPFDomain(domain) {
		return resNone, fmt.Sprintf("%q is not a domain name", truncate(domain, 64))
	}
	txts, err := c.r.LookupTXT(ctx, domain)
	if errors.Is(err, ErrNotFound) {
		return resNone, "no SPF record for " + domain
	} else if err != nil {
		return resTempError, err.Error()
	}
	var recs []string
	for _, txt := range txts {
		if isSPFRecord(txt) {
			recs = append(recs, txt)
		}
	}
	switch len(recs) {
	case 0:
		return resNone, "no SPF record for " + domain
	case 1:
	default:
		return resPermError, "several SPF records for " + domain
	}
	rec, err := parseSPF(recs[0])
	if err != nil {
		return resPermError, fmt.Sprintf("SPF record of %s: %v", domain, err)
	}
	return c.evaluate(ctx, rec, domain)
}

func (c *spfChecker) evaluate(ctx context.Context, rec *spfRecord, domain string) (authres.ResultValue, string) {
	for _, d := range rec.directives {
		match, errResult, reason := c.match(ctx, d, domain)
		if errResult != "" {
			return errResult, reason
		}
		if match {
			return qualifierResult(d.qualifier), fmt.Sprintf("%s matched %s in the SPF record of %s", c.ip, d, domain)
		}
	}
	if rec.redirect != nil && !rec.hasAll {
		if err := c.countLookup(); err != nil {
			return resPermError, err.Error()
		}
		target := c.expand(rec.redirect, domain)
		res, reason := c.checkHost(ctx, target)
		if res == resNone {
			return resPermError, "redirect from " + domain + ": " + reason
		}
		return res, reason
	}
	return resNeutral, fmt.Sprintf("no mechanism matched %s in the SPF record of %s", c.ip, domain)
}

func qualifierResult(q byte) authres.ResultValue {
	switch q {
	case '-':
		return resFail
	case '~':
		return resSoftFail
	case '?':
		return resNeutral
	}
	return resPass
}

// match evaluates one mechanism. errResult is non-empty when the
// evaluation must stop with a temperror or permerror.
func (c *spfChecker) match(ctx context.Context, d spfDirective, domain string) (match bool, errResult authres.ResultValue, reason string) {
	switch d.mechanism {
	case "all":
		return true, "", ""
	case "ip4", "ip6":
		return d.prefix.Contains(c.ip), "", ""
	}
	if err := c.countLookup(); err != nil {
		return false, resPermError, err.Error()
	}
	target := domain
	if d.domain != nil {
		target = c.expand(d.domain, domain)
	}
	switch d.mechanism {
	case "include":
		res, reason := c.checkHost(ctx, target)
		switch res {
		case resPass:
			return true, "", ""
		case resTempError:
			return false, resTempError, reason
		case resPermError, resNone:
			return false, resPermError, "include:" + target + ": " + reason
		}
		return false, "", ""
	case "a":
		addrs, errRes, reason := c.lookupIP(ctx, c.network(), target)
		if errRes != "" {
			return false, errRes, reason
		}
		return c.anyInCIDR(addrs, d), "", ""
	case "mx":
		mxs, err := c.r.LookupMX(ctx, target)
		if err != nil { // void or error: no match, or the end
			errRes, reason := c.lookupError(err)
			return false, errRes, reason
		}
		if len(mxs) > maxMXNames {
			return false, resPermError, fmt.Sprintf("%s has more than %d MX records", target, maxMXNames)
		}
		for _, mx := range mxs {
			if mx == "" { // null MX (RFC 7505)
				continue
			}
			addrs, err := c.r.LookupIP(ctx, c.network(), mx)
			if err != nil && !errors.Is(err, ErrNotFound) {
				return false, resTempError, err.Error()
			}
			if c.anyInCIDR(addrs, d) {
				return true, "", ""
			}
		}
		return false, "", ""
	case "exists":
		// exists always asks A, whatever the client's family (§5.7).
		addrs, errRes, reason := c.lookupIP(ctx, "ip4", target)
		return len(addrs) > 0, errRes, reason
	case "ptr":
		return c.matchPTR(ctx, target), "", ""
	}
	return false, resPermError, "unknown mechanism " + d.mechanism
}

// matchPTR implements the discouraged "ptr" (§5.5): a PTR name of the
// client, confirmed by a forward lookup, within target. DNS errors make
// it not match.
func (c *spfChecker) matchPTR(ctx context.Context, target string) bool {
	names, err := c.r.LookupPTR(ctx, c.ip)
	if err != nil {
		return false
	}
	target = strings.ToLower(strings.TrimSuffix(target, "."))
	for i, name := range names {
		if i >= maxPTRNames {
			break
		}
		n := strings.ToLower(name)
		if n != target && !strings.HasSuffix(n, "."+target) {
			continue
		}
		addrs, err := c.r.LookupIP(ctx, c.network(), name)
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if a == c.ip {
				return true
			}
		}
	}
	return false
}

// lookupIP looks up addresses for a mechanism, counting void lookups.
func (c *spfChecker) lookupIP(ctx context.Context, network, name string) ([]netip.Addr, authres.ResultValue, string) {
	addrs, err := c.r.LookupIP(ctx, network, name)
	errRes, reason := c.lookupError(err)
	return addrs, errRes, reason
}

// lookupError maps a mechanism's lookup error: a void lookup counts
// towards its limit, any other error is a temperror.
func (c *spfChecker) lookupError(err error) (authres.ResultValue, string) {
	switch {
	case err == nil:
		return "", ""
	case errors.Is(err, ErrNotFound):
		c.voids++
		if c.voids > maxVoidLookups {
			return resPermError, fmt.Sprintf("more than %d void DNS lookups", maxVoidLookups)
		}
		return "", ""
	default:
		return resTempError, err.Error()
	}
}

func (c *spfChecker) countLookup() error {
	c.lookups++
	if c.lookups > maxDNSLookups {
		return fmt.Errorf("more than %d DNS lookups", maxDNSLookups)
	}
	return nil
}

func (c *spfChecker) network() string {
	if c.ip.Is4() {
		return "ip4"
	}
	return "ip6"
}

func (c *spfChecker) anyInCIDR(addrs []netip.Addr, d spfDirective) bool {
	bits := d.cidr6
	if c.ip.Is4() {
		bits = d.cidr4
	}
	p, err := c.ip.Prefix(bits)
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if p.Contains(a.Unmap()) {
			return true
		}
	}
	return false
}

// expand expands a domain-spec (§7.3, §7.4): a result longer than 253
// characters loses labels on the left until it fits.
func (c *spfChecker) expand(ms *macroString, domain string) string {
	var b []byte
	for _, p := range ms.parts {
		if p.letter == 0 {
			b = append(b, p.literal...)
		} else {
			b = append(b, c.macroValue(p, domain)...)
		}
		// Repeated macros could make a huge name; only its right end can
		// survive the 253-character cut, so keep just that.
		if len(b) > 2048 {
			b = append([]byte(nil), b[len(b)-1024:]...)
		}
	}
	s := string(b)
	for len(strings.TrimSuffix(s, ".")) > 253 {
		i := strings.IndexByte(s, '.')
		if i < 0 {
			break
		}
		s = s[i+1:]
	}
	return s
}

func (c *spfChecker) macroValue(p macroPart, domain string) string {
	var v string
	switch p.letter {
	case 's':
		v = c.sender
	case 'l':
		v = c.local
	case 'o':
		v = c.senderDomain
	case 'd':
		v = domain
	case 'i':
		v = dottedIP(c.ip)
	case 'p':
		v = "unknown" // §7.3 allows it: validating costs lookups
	case 'v':
		v = "in-addr"
		if c.ip.Is6() {
			v = "ip6"
		}
	case 'h':
		v = c.helo
	}
	if p.keep > 0 || p.reverse || (p.delims != "" && p.delims != ".") {
		delims := p.delims
		if delims == "" {
			delims = "."
		}
		parts := strings.FieldsFunc(v, func(r rune) bool { return strings.ContainsRune(delims, r) })
		if p.reverse {
			for i, j := 0, len(parts)-1; i < j; i, j = i+1, j-1 {
				parts[i], parts[j] = parts[j], parts[i]
			}
		}
		if p.keep > 0 && p.keep < len(parts) {
			parts = parts[len(parts)-p.keep:]
		}
		v = strings.Join(parts, ".")
	}
	if p.urlEscape {
		v = urlEscape(v)
	}
	return v
}

// dottedIP is %{i}: dotted quad, or 32 dotted nibbles for IPv6.
func dottedIP(ip netip.Addr) string {
	if ip.Is4() {
		return ip.String()
	}
	const hex = "0123456789abcdef"
	b := make([]byte, 0, 63)
	for _, x := range ip.As16() {
		if len(b) > 0 {
			b = append(b, '.')
		}
		b = append(b, hex[x>>4], '.', hex[x&0xf])
	}
	return string(b)
}

// urlEscape escapes all but the unreserved characters (§7.3).
func urlEscape(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isAlpha(c) || isDigit(c) || c == '-' || c == '.' || c == '_' || c == '~' {
			b.WriteByte(c)
		} else {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xf])
		}
	}
	return b.String()
}

// isSPFDomain: a multi-label name with labels of 1 to 63 characters and
// at most 253 characters (§4.3); anything else gives "none".
func isSPFDomain(d string) bool {
	if len(d) == 0 || len(d) > 253 || !strings.Contains(d, ".") || d[0] == '[' {
		return false
	}
	if _, err := netip.ParseAddr(d); err == nil {
		return false // an address, not a name
	}
	for label := range strings.SplitSeq(d, ".") {
		if len(label) == 0 || len(label) > 63 {
			return false
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; c <= ' ' || c >= 0x7f || c == '\\' {
				return false
			}
		}
	}
	return true
}
