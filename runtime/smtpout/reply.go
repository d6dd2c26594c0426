package smtpout

import (
	"bufio"
	"errors"
	"fmt"
	"strings"
)

// Limits of a reply read from a remote server: RFC 5321 §4.5.3.1.5 allows
// 512 octets a line; real servers send longer ones, never this long.
const (
	maxReplyLine  = 4096
	maxReplyLines = 128
)

// errBadReply is matched by the error of a reply that is not SMTP.
var errBadReply = errors.New("malformed SMTP reply")

// reply is one SMTP reply, all its lines.
type reply struct {
	Code     int
	Enhanced string   // "5.1.1" when the first line starts with one, or ""
	Lines    []string // the text of each line, without the code and separator
	Raw      string   // the whole reply as received, lines joined by "\n"
}

// readReply reads one reply, multi-line or not (RFC 5321 §4.2.1). Control
// characters in the text become '?', and invalid UTF-8 U+FFFD: the text
// goes into logs and bounces.
func readReply(r *bufio.Reader) (reply, error) {
	var rp reply
	var raw []string
	for {
		line, err := readLine(r)
		if err != nil {
			return rp, err
		}
		if len(line) < 3 || !isCode(line[:3]) {
			return rp, fmt.Errorf("%w: %q", errBadReply, clip(line))
		}
		code := int(line[0]-'0')*100 + int(line[1]-'0')*10 + int(line[2]-'0')
		if rp.Code != 0 && code != rp.Code {
			return rp, fmt.Errorf("%w: code %d within a reply of code %d", errBadReply, code, rp.Code)
		}
		rp.Code = code
		sep, text := byte(' '), ""
		if len(line) > 3 {
			sep, text = line[3], line[4:]
		}
		if sep != ' ' && sep != '-' {
			return rp, fmt.Errorf("%w: %q", errBadReply, clip(line))
		}
		raw = append(raw, line)
		rp.Lines = append(rp.Lines, text)
		if sep == ' ' {
			break
		}
		if len(raw) >= maxReplyLines {
			return rp, fmt.Errorf("%w: more than %d lines", errBadReply, maxReplyLines)
		}
	}
	rp.Raw = strings.Join(raw, "\n")
	rp.Enhanced = enhancedCode(rp.Code, rp.Lines[0])
	return rp, nil
}

// readLine reads one line, without its CRLF (or bare LF), cleaned.
func readLine(r *bufio.Reader) (string, error) {
	var buf []byte
	for {
		chunk, err := r.ReadSlice('\n')
		if len(buf)+len(chunk) > maxReplyLine+2 {
			return "", fmt.Errorf("%w: a line longer than %d octets", errBadReply, maxReplyLine)
		}
		buf = append(buf, chunk...)
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("read reply: %w", err)
		}
		break
	}
	buf = buf[:len(buf)-1]
	if n := len(buf); n > 0 && buf[n-1] == '\r' {
		buf = buf[:n-1]
	}
	for i, c := range buf {
		if c < ' ' && c != '\t' || c == 0x7f {
			buf[i] = '?'
		}
	}
	return strings.ToValidUTF8(string(buf), "\uFFFD"), nil
}

// isCode reports whether s is a reply code: 2xx to 5xx (RFC 5321 §4.2).
func isCode(s string) bool {
	return s[0] >= '2' && s[0] <= '5' && s[1] >= '0' && s[1] <= '9' && s[2] >= '0' && s[2] <= '9'
}

// enhancedCode returns the enhanced status code (RFC 3463) that starts
// text when its class agrees with code, or "".
func enhancedCode(code int, text string) string {
	end := strings.IndexAny(text, " \t")
	if end < 0 {
		end = len(text)
	}
	s := text[:end]
	parts := strings.Split(s, ".")
	if len(parts) != 3 || len(parts[0]) != 1 || int(parts[0][0]-'0') != code/100 || code/100 == 3 {
		return ""
	}
	for _, p := range parts[1:] {
		if len(p) == 0 || len(p) > 3 {
			return ""
		}
		for i := range len(p) {
			if p[i] < '0' || p[i] > '9' {
				return ""
			}
		}
	}
	return s
}

// clip shortens what goes into an error message.
func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
