package mailauth

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// spfRecord is a parsed SPF record (RFC 7208 §4.6, §12 ABNF).
type spfRecord struct {
	directives []spfDirective
	redirect   *macroString // redirect= modifier, nil if absent
	exp        *macroString // exp= modifier, parsed but not used
	hasAll     bool         // an "all" makes redirect ignored (§6.1)
}

type spfDirective struct {
	qualifier byte   // '+', '-', '~' or '?'
	mechanism string // all, include, a, mx, ptr, ip4, ip6, exists (lower case)
	domain    *macroString
	prefix    netip.Prefix // ip4 and ip6
	cidr4     int          // a and mx: IPv4 prefix length
	cidr6     int          // a and mx: IPv6 prefix length
}

func (d spfDirective) String() string {
	s := d.mechanism
	if d.qualifier != '+' {
		s = string(d.qualifier) + s
	}
	switch {
	case d.mechanism == "ip4" || d.mechanism == "ip6":
		s += ":" + d.prefix.String()
	case d.domain != nil:
		s += ":" + d.domain.raw
	}
	return s
}

// isSPFRecord reports whether a TXT string is an SPF version 1 record
// (§4.5: "v=spf1" followed by a space or the end, case-insensitively).
func isSPFRecord(txt string) bool {
	if len(txt) < 6 || !strings.EqualFold(txt[:6], "v=spf1") {
		return false
	}
	return len(txt) == 6 || txt[6] == ' '
}

// parseSPF parses a whole record; any syntax error anywhere is a permerror
// before anything is evaluated (§4.6).
func parseSPF(txt string) (*spfRecord, error) {
	if !isSPFRecord(txt) {
		return nil, errors.New("not an SPF record")
	}
	rec := &spfRecord{}
	for _, term := range strings.Split(txt[6:], " ") {
		if term == "" {
			continue
		}
		if err := rec.parseTerm(term); err != nil {
			return nil, fmt.Errorf("term %q: %w", truncate(term, 64), err)
		}
	}
	return rec, nil
}

func (rec *spfRecord) parseTerm(term string) error {
	// A modifier is name "=" macro-string; a name never holds ':' or '/',
	// so the first '=' before them marks a modifier.
	if i := strings.IndexAny(term, "=:/"); i > 0 && term[i] == '=' {
		return rec.parseModifier(term[:i], term[i+1:])
	}
	d := spfDirective{qualifier: '+', cidr4: 32, cidr6: 128}
	switch term[0] {
	case '+', '-', '~', '?':
		d.qualifier = term[0]
		term = term[1:]
	}
	name, arg, hasArg := term, "", false
	if i := strings.IndexAny(term, ":/"); i >= 0 {
		name, arg, hasArg = term[:i], term[i:], true
	}
	d.mechanism = strings.ToLower(name)
	var err error
	switch d.mechanism {
	case "all":
		if hasArg {
			return errors.New("all takes no argument")
		}
		rec.hasAll = true
	case "include", "exists":
		if !strings.HasPrefix(arg, ":") {
			return errors.New("domain required")
		}
		d.domain, err = parseDomainSpec(arg[1:])
	case "ptr":
		if hasArg {
			if !strings.HasPrefix(arg, ":") {
				return errors.New("bad argument")
			}
			d.domain, err = parseDomainSpec(arg[1:])
		}
	case "a", "mx":
		arg, d.cidr4, d.cidr6, err = cutDualCIDR(arg)
		if err != nil {
			return err
		}
		if arg != "" {
			if !strings.HasPrefix(arg, ":") {
				return errors.New("bad argument")
			}
			d.domain, err = parseDomainSpec(arg[1:])
		}
	case "ip4", "ip6":
		if !strings.HasPrefix(arg, ":") {
			return errors.New("address required")
		}
		d.prefix, err = parseIPNetwork(d.mechanism, arg[1:])
	default:
		return errors.New("unknown mechanism")
	}
	if err != nil {
		return err
	}
	rec.directives = append(rec.directives, d)
	return nil
}

func (rec *spfRecord) parseModifier(name, value string) error {
	if !isAlpha(name[0]) {
		return errors.New("bad modifier name")
	}
	for i := 1; i < len(name); i++ {
		c := name[i]
		if !isAlpha(c) && !isDigit(c) && c != '-' && c != '_' && c != '.' {
			return errors.New("bad modifier name")
		}
	}
	switch strings.ToLower(name) {
	case "redirect":
		if rec.redirect != nil {
			return errors.New("duplicate redirect")
		}
		ms, err := parseDomainSpec(value)
		if err != nil {
			return err
		}
		rec.redirect = ms
	case "exp":
		if rec.exp != nil {
			return errors.New("duplicate exp")
		}
		ms, err := parseDomainSpec(value)
		if err != nil {
			return err
		}
		rec.exp = ms
	default:
		// Unknown modifiers are ignored, but must be well formed (§6).
		if _, err := parseMacroString(value, true); err != nil {
			return err
		}
	}
	return nil
}

// cutDualCIDR removes a trailing ip4-cidr-length and/or
// ip6-cidr-length ("/24", "//64", "/24//64") from s.
func cutDualCIDR(s string) (rest string, c4, c6 int, err error) {
	c4, c6 = 32, 128
	if i := strings.LastIndex(s, "//"); i >= 0 && allDigits(s[i+2:]) {
		if c6, err = cidrLength(s[i+2:], 128); err != nil {
			return "", 0, 0, err
		}
		s = s[:i]
	}
	if i := strings.LastIndexByte(s, '/'); i >= 0 && allDigits(s[i+1:]) {
		if c4, err = cidrLength(s[i+1:], 32); err != nil {
			return "", 0, 0, err
		}
		s = s[:i]
	}
	return s, c4, c6, nil
}

// cidrLength parses a prefix length: no leading zero, at most max.
func cidrLength(s string, max int) (int, error) {
	if s == "" || len(s) > 3 || (len(s) > 1 && s[0] == '0') {
		return 0, fmt.Errorf("bad prefix length %q", s)
	}
	n, err := strconv.Atoi(s)
	if err != nil || n > max {
		return 0, fmt.Errorf("bad prefix length %q", s)
	}
	return n, nil
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}

func parseIPNetwork(mech, s string) (netip.Prefix, error) {
	addr, length := s, ""
	if i := strings.IndexByte(s, '/'); i >= 0 {
		addr, length = s[:i], s[i+1:]
	}
	a, err := netip.ParseAddr(addr)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("bad address %q", truncate(addr, 64))
	}
	max := 32
	if mech == "ip4" {
		if !a.Is4() {
			return netip.Prefix{}, fmt.Errorf("not an IPv4 address %q", addr)
		}
	} else {
		if !a.Is6() {
			return netip.Prefix{}, fmt.Errorf("not an IPv6 address %q", addr)
		}
		max = 128
	}
	bits := max
	if i := strings.IndexByte(s, '/'); i >= 0 {
		if bits, err = cidrLength(length, max); err != nil {
			return netip.Prefix{}, err
		}
	}
	return netip.PrefixFrom(a, bits).Masked(), nil
}

// macroString is a parsed macro-string (§7.1).
type macroString struct {
	raw   string
	parts []macroPart
}

// macroPart is a literal (letter == 0) or a macro-expand.
type macroPart struct {
	literal   string
	letter    byte // s l o d i p h c r t v, lower case
	urlEscape bool // the letter was upper case
	keep      int  // rightmost labels to keep; 0 means all
	reverse   bool
	delims    string // splitting characters; "" means "."
}

// parseDomainSpec parses a domain-spec: a macro-string ending in a
// top-level label or a macro (§7.1).
func parseDomainSpec(s string) (*macroString, error) {
	ms, err := parseMacroString(s, false)
	if err != nil {
		return nil, err
	}
	if len(ms.parts) == 0 {
		return nil, errors.New("empty domain")
	}
	last := ms.parts[len(ms.parts)-1]
	if last.letter != 0 {
		return ms, nil
	}
	lit := strings.TrimSuffix(last.literal, ".")
	i := strings.LastIndexByte(lit, '.')
	if i < 0 {
		// The domain-end must be "." toplabel, or a macro right before a
		// single trailing dot.
		if lit == "" && len(ms.parts) > 1 && ms.parts[len(ms.parts)-2].letter != 0 {
			return ms, nil
		}
		return nil, fmt.Errorf("domain %q does not end in a top-level label", truncate(s, 64))
	}
	if !isTopLabel(lit[i+1:]) {
		return nil, fmt.Errorf("domain %q does not end in a top-level label", truncate(s, 64))
	}
	return ms, nil
}

// isTopLabel: alphanumerics and inner hyphens, not all digits (§7.1).
func isTopLabel(s string) bool {
	if s == "" || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	alpha := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case isAlpha(c):
			alpha = true
		case isDigit(c):
		case c == '-':
			alpha = true // 1*alphanum "-" ... is allowed even if digits
		default:
			return false
		}
	}
	return alpha
}

// parseMacroString parses a macro-string; exp allows the letters c, r and
// t, which only explanation strings may hold (§7.3).
func parseMacroString(s string, exp bool) (*macroString, error) {
	ms := &macroString{raw: s}
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			ms.parts = append(ms.parts, macroPart{literal: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '%' {
			if c < 0x21 || c > 0x7e {
				return nil, fmt.Errorf("bad character %q", c)
			}
			lit.WriteByte(c)
			continue
		}
		if i+1 >= len(s) {
			return nil, errors.New("lone %")
		}
		i++
		switch s[i] {
		case '%':
			lit.WriteByte('%')
		case '_':
			lit.WriteByte(' ')
		case '-':
			lit.WriteString("%20")
		case '{':
			end := strings.IndexByte(s[i:], '}')
			if end < 0 {
				return nil, errors.New("unterminated macro")
			}
			p, err := parseMacroExpand(s[i+1:i+end], exp)
			if err != nil {
				return nil, err
			}
			flush()
			ms.parts = append(ms.parts, p)
			i += end
		default:
			return nil, fmt.Errorf("bad macro %%%c", s[i])
		}
	}
	flush()
	return ms, nil
}

// parseMacroExpand parses the inside of "%{...}".
func parseMacroExpand(s string, exp bool) (macroPart, error) {
	if s == "" {
		return macroPart{}, errors.New("empty macro")
	}
	p := macroPart{letter: toLower(s[0]), urlEscape: s[0] >= 'A' && s[0] <= 'Z'}
	switch p.letter {
	case 's', 'l', 'o', 'd', 'i', 'p', 'h', 'v':
	case 'c', 'r', 't':
		if !exp {
			return macroPart{}, fmt.Errorf("macro %%{%c} only allowed in exp", s[0])
		}
	default:
		return macroPart{}, fmt.Errorf("bad macro letter %q", s[0])
	}
	i := 1
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	if i > 1 {
		n, err := strconv.Atoi(s[1:i])
		if err != nil || n > 255 {
			n = 256 // more than any name's labels: keep them all
		}
		if n == 0 {
			return macroPart{}, errors.New("macro count must be nonzero")
		}
		p.keep = n
	}
	if i < len(s) && (s[i] == 'r' || s[i] == 'R') {
		p.reverse = true
		i++
	}
	p.delims = s[i:]
	for ; i < len(s); i++ {
		if !strings.ContainsRune(".-+,/_=", rune(s[i])) {
			return macroPart{}, fmt.Errorf("bad macro delimiter %q", s[i])
		}
	}
	return p, nil
}

func isAlpha(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

func toLower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
