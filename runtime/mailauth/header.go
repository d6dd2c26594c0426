package mailauth

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"mime"
	"net/mail"
	"strings"
)

// maxHeaderBytes bounds the header section Verify reads to find From;
// DKIM still sees the whole message.
const maxHeaderBytes = 1 << 20

var errHeaderTooLarge = errors.New("header section too large")

// readHeader reads the header section and the blank line ending it. ended
// is false when the message ended first; a header larger than max stops
// the reading with errHeaderTooLarge (hdr then holds what was read).
func readHeader(br *bufio.Reader, max int) (hdr []byte, ended bool, err error) {
	atLineStart := true
	for {
		chunk, err := br.ReadSlice('\n')
		blank := atLineStart && (bytes.Equal(chunk, []byte("\r\n")) || bytes.Equal(chunk, []byte("\n")))
		hdr = append(hdr, chunk...)
		if blank {
			return hdr, true, nil
		}
		if len(hdr) > max {
			return hdr, false, errHeaderTooLarge
		}
		switch {
		case err == nil:
			atLineStart = true
		case errors.Is(err, bufio.ErrBufferFull):
			atLineStart = false
		case errors.Is(err, io.EOF):
			return hdr, false, nil
		default:
			return hdr, false, err
		}
	}
}

// headerField is one field of a header section: name is empty for a line
// that is no field.
type headerField struct {
	name  string
	value string // raw, still folded, without the line end
	raw   []byte // the whole field with its line ends
}

// splitHeader cuts a header section (ending at its blank line, or at the
// end of hdr) into fields; rest is what follows the header section.
func splitHeader(msg []byte) (fields []headerField, rest []byte) {
	for len(msg) > 0 {
		line, next := cutLine(msg)
		if isBlankLine(line) {
			return fields, msg
		}
		if (line[0] == ' ' || line[0] == '\t') && len(fields) > 0 {
			f := &fields[len(fields)-1]
			f.raw = append(f.raw, line...)
			if f.name != "" {
				f.value += string(trimEOL(line))
			}
			msg = next
			continue
		}
		f := headerField{raw: append([]byte(nil), line...)}
		if i := bytes.IndexByte(line, ':'); i > 0 {
			name := strings.TrimRight(string(line[:i]), " \t")
			if isFieldName(name) {
				f.name = name
				f.value = string(trimEOL(line[i+1:]))
			}
		}
		fields = append(fields, f)
		msg = next
	}
	return fields, nil
}

func cutLine(b []byte) (line, rest []byte) {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		return b[:i+1], b[i+1:]
	}
	return b, nil
}

func isBlankLine(l []byte) bool {
	return bytes.Equal(l, []byte("\r\n")) || bytes.Equal(l, []byte("\n"))
}

func trimEOL(l []byte) []byte {
	l = bytes.TrimSuffix(l, []byte("\n"))
	return bytes.TrimSuffix(l, []byte("\r"))
}

// isFieldName: printable US-ASCII but ':' (RFC 5322 §3.6.8).
func isFieldName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 33 || c > 126 || c == ':' {
			return false
		}
	}
	return true
}

// unfold removes the line breaks of a folded value.
func unfold(v string) string {
	v = strings.ReplaceAll(v, "\r\n", "")
	return strings.ReplaceAll(v, "\n", "")
}

// fromDomain returns the domain of the RFC5322.From address: there must be
// exactly one From field holding exactly one address (RFC 7489 §6.6.1).
func fromDomain(fields []headerField) (string, error) {
	var from []string
	for _, f := range fields {
		if strings.EqualFold(f.name, "From") {
			from = append(from, f.value)
		}
	}
	switch len(from) {
	case 0:
		return "", errors.New("no From field")
	case 1:
	default:
		return "", errors.New("several From fields")
	}
	addrs, err := FromAddresses(from[0])
	if err != nil {
		return "", errors.New("unparsable From field")
	}
	if len(addrs) != 1 {
		return "", errors.New("From field holds several addresses")
	}
	at := strings.LastIndexByte(addrs[0], '@')
	if at < 0 {
		return "", errors.New("From address has no domain")
	}
	d := strings.ToLower(strings.TrimSuffix(addrs[0][at+1:], "."))
	if !isSPFDomain(d) {
		return "", errors.New("From domain is not a domain name")
	}
	return d, nil
}

// FromAddresses returns the addresses of a From field's value (what
// follows "From:", folded or not): mailboxes, or groups of them (RFC
// 6854), as net/mail parses them; display names, comments and encoded
// words are left out. Only the addresses matter: a name in a charset Go
// does not know is no error. The list is empty for an empty group.
func FromAddresses(value string) ([]string, error) {
	p := mail.AddressParser{WordDecoder: &mime.WordDecoder{
		CharsetReader: func(_ string, r io.Reader) (io.Reader, error) { return r, nil },
	}}
	list, err := p.ParseList(unfold(value))
	if err != nil {
		return nil, err
	}
	addrs := make([]string, len(list))
	for i, a := range list {
		addrs[i] = a.Address
	}
	return addrs, nil
}

// IsOurs reports whether an Authentication-Results field value (what
// follows "Authentication-Results:") names authservID as its
// authentication service: such a field in an arriving message is forged
// and must go (RFC 8601 §5). Host names compare as DNS names do: case
// aside, and "host." is "host" (a reader that takes the id for the host
// name sees the same service either way).
func IsOurs(value, authservID string) bool {
	id, ok := parseAuthservID(value)
	return ok && sameHost(id, authservID)
}

// sameHost says whether a and b name the same host: ASCII case and one
// final dot aside. An empty name is no host.
func sameHost(a, b string) bool {
	a, b = strings.TrimSuffix(a, "."), strings.TrimSuffix(b, ".")
	return a != "" && strings.EqualFold(a, b)
}

// parseAuthservID reads the authserv-id that starts an
// Authentication-Results value: [CFWS] value, value being a token or a
// quoted-string (RFC 8601 §2.2).
func parseAuthservID(v string) (string, bool) {
	v = unfold(v)
	i, ok := skipCFWS(v, 0)
	if !ok || i >= len(v) {
		return "", false
	}
	if v[i] == '"' {
		var b strings.Builder
		for i++; i < len(v); i++ {
			switch v[i] {
			case '\\':
				i++
				if i < len(v) {
					b.WriteByte(v[i])
				}
			case '"':
				return b.String(), b.Len() > 0
			default:
				b.WriteByte(v[i])
			}
		}
		return "", false
	}
	j := i
	for j < len(v) && isTokenChar(v[j]) {
		j++
	}
	return v[i:j], j > i
}

// skipCFWS skips white space and (nested) comments from i.
func skipCFWS(v string, i int) (int, bool) {
	depth := 0
	for ; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '\\' && depth > 0:
			i++
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case depth > 0, c == ' ', c == '\t':
		default:
			return i, true
		}
	}
	return i, depth == 0
}

// isTokenChar: a MIME token character (RFC 2045 §5.1), what an unquoted
// authserv-id is made of.
func isTokenChar(c byte) bool {
	return c > ' ' && c < 0x7f && !strings.ContainsRune(`()<>@,;:\"/[]?=`, rune(c))
}
