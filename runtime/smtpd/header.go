package smtpd

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"mailfountain.dev/mailfountain/runtime/mailauth"
)

// headerEnd returns the index just after the empty line that ends the
// header block of msg, or len(msg) and false if msg holds no such line.
func headerEnd(msg []byte) (int, bool) {
	i := 0
	for i < len(msg) {
		if msg[i] == '\n' {
			return i + 1, true
		}
		if msg[i] == '\r' && i+1 < len(msg) && msg[i+1] == '\n' {
			return i + 2, true
		}
		j := bytes.IndexByte(msg[i:], '\n')
		if j < 0 {
			break
		}
		i += j + 1
	}
	return len(msg), false
}

// nextLine returns the index just after the line that starts at i.
func nextLine(b []byte, i int) int {
	if j := bytes.IndexByte(b[i:], '\n'); j >= 0 {
		return i + j + 1
	}
	return len(b)
}

// The header section is read as the mailboxes and the next hops will
// read it, once bare LFs are made CRLF and bare CRs are refused (see
// lineend.go): lines end at LF; it ends at the first empty line
// (headerEnd); a field is a line that does not start with white space and
// the lines after it that do (RFC 5322 2.2.3); its name is what precedes
// the first colon, white space around it aside (RFC 5322 4.5's obsolete
// "name :" included). A line without a colon is no field.

// nextField returns the index just after the field that starts at i.
func nextField(hdr []byte, i int) int {
	end := nextLine(hdr, i)
	for end < len(hdr) && (hdr[end] == ' ' || hdr[end] == '\t') {
		end = nextLine(hdr, end)
	}
	return end
}

// splitField returns the name and the value (what follows the colon, with
// its line ends) of a field; ok is false for a line that is no field.
func splitField(field []byte) (name, value []byte, ok bool) {
	colon := bytes.IndexByte(field, ':')
	if colon < 0 {
		return nil, nil, false
	}
	return bytes.Trim(field[:colon], " \t"), field[colon+1:], true
}

// forgedAuthResults returns the byte ranges, in order, of the
// Authentication-Results fields of hdr, a whole header section, whose
// authserv-id is id: such a field claims to come from this host, and only
// this host may add it (RFC 8601 5).
func forgedAuthResults(hdr []byte, id string) [][2]int {
	if id == "" {
		return nil
	}
	var drop [][2]int
	for i := 0; i < len(hdr); {
		end := nextField(hdr, i)
		if isAuthResultsOf(hdr[i:end], id) {
			drop = append(drop, [2]int{i, end})
		}
		i = end
	}
	return drop
}

// isAuthResultsOf says whether field is an Authentication-Results field
// with authserv-id id.
func isAuthResultsOf(field []byte, id string) bool {
	name, value, ok := splitField(field)
	return ok && bytes.EqualFold(name, []byte("Authentication-Results")) && mailauth.IsOurs(string(value), id)
}

// Why fromAddresses refuses a header section.
var (
	errNoFrom      = errors.New("no From field, or no address in it")
	errSeveralFrom = errors.New("several From fields")
	errBadFrom     = errors.New("unparsable From field")
)

// fromAddresses returns the addresses of the From field of hdr, a whole
// header section: there must be one From field (RFC 5322 3.6), holding
// one address or more (mailboxes, or groups of them: RFC 6854), as
// mailauth.FromAddresses reads them.
func fromAddresses(hdr []byte) ([]string, error) {
	var from []byte
	n := 0
	for i := 0; i < len(hdr); {
		end := nextField(hdr, i)
		if name, value, ok := splitField(hdr[i:end]); ok && bytes.EqualFold(name, []byte("From")) {
			from = value
			n++
		}
		i = end
	}
	switch {
	case n == 0:
		return nil, errNoFrom
	case n > 1:
		return nil, errSeveralFrom
	}
	addrs, err := mailauth.FromAddresses(string(from))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errBadFrom, err)
	}
	if len(addrs) == 0 {
		return nil, errNoFrom // an empty group
	}
	return addrs, nil
}

// received is what the Received field says.
type received struct {
	helo  string     // the client's EHLO argument
	name  string     // the client's reverse DNS name, or "unknown"
	ip    netip.Addr // the client's address
	by    string     // the box's host name
	proto string     // ESMTP, ESMTPS, ESMTPA or ESMTPSA (RFC 3848)
	id    string
	rcpt  string // the one recipient, or ""
	at    time.Time
}

// appendReceived appends the Received field of r, folded:
//
//	Received: from <helo> (<name> [<ip>])
//		by <host> (MailFountain) with ESMTPS id <id>
//		for <rcpt>; <date>
func appendReceived(b []byte, r received) []byte {
	b = append(b, "Received: from "...)
	b = append(b, cleanHelo(r.helo)...)
	b = append(b, " ("...)
	b = append(b, r.name...)
	b = append(b, " ["...)
	switch {
	case !r.ip.IsValid():
		b = append(b, "unknown"...)
	case r.ip.Is6():
		b = append(b, "IPv6:"...)
		b = r.ip.AppendTo(b)
	default:
		b = r.ip.AppendTo(b)
	}
	b = append(b, "])\r\n\tby "...)
	b = append(b, hostnameOr(cleanHostname(r.by))...)
	b = append(b, " (MailFountain) with "...)
	b = append(b, r.proto...)
	b = append(b, " id "...)
	b = append(b, r.id...)
	if rcpt := safeForClause(r.rcpt); rcpt != "" {
		b = append(b, "\r\n\tfor <"...)
		b = append(b, rcpt...)
		b = append(b, ">; "...)
	} else {
		b = append(b, ";\r\n\t"...)
	}
	b = r.at.AppendFormat(b, time.RFC1123Z)
	return append(b, "\r\n"...)
}

// appendReturnPath appends the Return-Path field of a reverse path.
func appendReturnPath(b []byte, from string) []byte {
	b = append(b, "Return-Path: <"...)
	b = appendPath(b, from)
	return append(b, ">\r\n"...)
}

// appendAuthResults appends the Authentication-Results field of a
// Verifier, ending it with CRLF.
func appendAuthResults(b []byte, field string) []byte {
	field = strings.TrimRight(field, "\r\n")
	if field == "" {
		return b
	}
	b = append(b, field...)
	return append(b, "\r\n"...)
}

// cleanHelo makes an EHLO argument safe in a Received field: printable
// ASCII without the characters that would end its clause, 255 at most.
func cleanHelo(h string) string {
	if len(h) > 255 {
		h = h[:255]
	}
	return strings.Map(func(r rune) rune {
		if r <= ' ' || r >= 0x7f || strings.ContainsRune(`()<>;\"`, r) {
			return '?'
		}
		return r
	}, h)
}

// cleanHostname returns name (from reverse DNS or the settings) without
// its final dot if it is a plausible host name, or "".
func cleanHostname(name string) string {
	name = strings.TrimSuffix(name, ".")
	if name == "" || len(name) > 253 {
		return ""
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return ""
		}
	}
	return name
}

// safeForClause returns rcpt if it can stand in the "for" clause of a
// Received field, or "".
func safeForClause(rcpt string) string {
	if len(rcpt) > 320 {
		return ""
	}
	for i := 0; i < len(rcpt); i++ {
		if c := rcpt[i]; c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>;\",`, c) >= 0 {
			return ""
		}
	}
	return rcpt
}

// appendPath appends an address of the envelope (go-smtp gives the local
// part unquoted) as a path: the local part quoted when it is not a
// dot-atom, control characters replaced by '?'.
func appendPath(b []byte, addr string) []byte {
	if addr == "" {
		return b
	}
	local, domain := addr, ""
	at := strings.LastIndexByte(addr, '@')
	if at >= 0 {
		local, domain = addr[:at], addr[at+1:]
	}
	if isDotAtom(local) {
		b = append(b, local...)
	} else {
		b = append(b, '"')
		for i := 0; i < len(local); i++ {
			switch c := local[i]; {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < ' ' || c == 0x7f:
				b = append(b, '?')
			default:
				b = append(b, c)
			}
		}
		b = append(b, '"')
	}
	if at >= 0 {
		b = append(b, '@')
		for i := 0; i < len(domain); i++ {
			if c := domain[i]; c <= ' ' || c == 0x7f || c == '>' || c == '<' {
				b = append(b, '?')
			} else {
				b = append(b, c)
			}
		}
	}
	return b
}

// isDotAtom says whether s is a dot-atom (RFC 5322 3.2.3), UTF-8 allowed
// (RFC 6532).
func isDotAtom(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c >= 0x80, c == '.':
		case strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
