package dsn

import (
	"bytes"
	"mime"
	"strings"
	"unicode/utf8"
)

// ShouldReport says whether a delivery report may be sent about a message
// with this envelope sender and header (the message's first bytes; the
// body is not read), and why not. Never to the null sender <>, and never
// about an automatic message, so that two systems never bounce at each
// other: a message with an Auto-Submitted field other than "no" (RFC
// 3834), or a report itself (Content-Type multipart/report with
// report-type delivery-status or global-delivery-status, RFC 6522 and
// RFC 6533). Build applies it; the queue may call it first to skip the
// work.
func ShouldReport(envelopeSender string, original []byte) (ok bool, why string) {
	s := strings.TrimSpace(envelopeSender)
	if s == "" || s == "<>" {
		return false, "the envelope sender is the null reverse-path <>"
	}
	header := headerOf(original)
	for _, v := range originalFields(header, "Auto-Submitted") {
		kw, _, _ := strings.Cut(stripComments(v), ";")
		if kw = strings.ToLower(strings.TrimSpace(kw)); kw != "no" {
			return false, "the message is automatic (Auto-Submitted: " + kw + ")"
		}
	}
	for _, v := range originalFields(header, "Content-Type") {
		if isReport(v) {
			return false, "the message is a delivery report (multipart/report)"
		}
	}
	return true, ""
}

// stripComments removes the RFC 5322 comments, "(…)", nested or not.
func stripComments(s string) string {
	var b strings.Builder
	depth := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && depth > 0:
			i++
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case depth == 0:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func isReport(contentType string) bool {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		// A malformed field still counts if it looks like a report: a
		// bounce loop costs more than a missed report.
		l := strings.ToLower(contentType)
		return strings.Contains(l, "multipart/report") && strings.Contains(l, "delivery-status")
	}
	rt := strings.ToLower(params["report-type"])
	return mt == "multipart/report" && (rt == "delivery-status" || rt == "global-delivery-status")
}

// headerOf is the header of a message: everything before the first empty
// line, or all of it when there is none (a header alone, or a prefix).
func headerOf(msg []byte) []byte {
	if bytes.HasPrefix(msg, []byte("\n")) || bytes.HasPrefix(msg, []byte("\r\n")) {
		return nil
	}
	for i := 0; ; {
		j := bytes.IndexByte(msg[i:], '\n')
		if j < 0 {
			return msg
		}
		i += j + 1
		if bytes.HasPrefix(msg[i:], []byte("\n")) || bytes.HasPrefix(msg[i:], []byte("\r\n")) {
			return msg[:i]
		}
	}
}

// originalFields returns the unfolded values of every field called name.
func originalFields(header []byte, name string) []string {
	var vals []string
	var cur []byte
	flush := func() {
		if k, v, ok := bytes.Cut(cur, []byte(":")); ok && strings.EqualFold(strings.TrimSpace(string(k)), name) {
			vals = append(vals, strings.TrimSpace(string(v)))
		}
		cur = nil
	}
	for _, l := range bytes.Split(header, []byte("\n")) {
		l = bytes.TrimRight(l, "\r")
		if len(l) > 0 && (l[0] == ' ' || l[0] == '\t') {
			cur = append(cur, l...)
			continue
		}
		flush()
		cur = append(cur, l...)
	}
	flush()
	return vals
}

func originalField(header []byte, name string) string {
	if v := originalFields(header, name); len(v) > 0 {
		return v[0]
	}
	return ""
}

// decodedSubject is the original Subject for the explanation: RFC 2047
// decoded, valid UTF-8 without control characters, at most 200 runes.
func decodedSubject(header []byte) string {
	s := originalField(header, "Subject")
	var d mime.WordDecoder
	if dec, err := d.DecodeHeader(s); err == nil {
		s = dec
	}
	s = strings.ToValidUTF8(s, "?")
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f || r >= 0x80 && r < 0xa0 {
			return ' '
		}
		return r
	}, s)
	if utf8.RuneCountInString(s) > 200 {
		s = string([]rune(s)[:200]) + "…"
	}
	return strings.TrimSpace(s)
}

// normalizeLines writes b as CRLF lines of at most 998 octets (a longer
// line is folded), without NUL and bare CR. With max > 0 b is a header
// and is cut before the first field that would pass max octets.
func normalizeLines(b []byte, max int) []byte {
	var out, field []byte
	full := false
	endField := func() {
		if max > 0 && len(out)+len(field) > max {
			full = true
		}
		if !full {
			out = append(out, field...)
		}
		field = field[:0]
	}
	for len(b) > 0 && !full {
		l := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			l, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		l = bytes.TrimRight(l, "\r")
		if len(l) == 0 || l[0] != ' ' && l[0] != '\t' {
			endField()
		}
		line := make([]byte, 0, len(l))
		for _, c := range l {
			switch c {
			case 0:
				continue
			case '\r':
				c = ' '
			}
			line = append(line, c)
		}
		for len(line) > hardLimit {
			field = append(field, line[:hardLimit]...)
			field = append(field, "\r\n "...)
			line = line[hardLimit:]
		}
		field = append(field, line...)
		field = append(field, "\r\n"...)
	}
	endField()
	return out
}
