package pop3d

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"

	"mailfountain.dev/mailfountain/runtime/auth"
)

// command is one client command line, parsed.
type command struct {
	// Name is the keyword, uppercased (RFC 1939: case-insensitive, 3 or 4
	// characters; RFC 2449 allows up to 4).
	Name string
	// Args are the arguments, split on spaces.
	Args []string
	// Rest is everything after the keyword and its space, as sent: PASS
	// takes it whole, since a password may contain spaces (RFC 1939 7).
	Rest string
}

// Errors of parseCommand.
var (
	errEmptyLine  = errors.New("empty command line")
	errBadKeyword = errors.New("invalid command keyword")
	errBadChar    = errors.New("control character in command line")
)

// maxKeyword is the longest keyword (RFC 2449 3: "up to four characters"
// for extensions; all we know are 3 or 4).
const maxKeyword = 4

// parseCommand parses one line, its line end already removed. It accepts
// several spaces between arguments (some clients send them) but nothing
// else unusual: no control characters, a keyword of 1 to 4 letters.
func parseCommand(line []byte) (command, error) {
	if len(line) == 0 {
		return command{}, errEmptyLine
	}
	for _, c := range line {
		// Tab is let through: it cannot harm, and a password may hold
		// one in theory. Anything else below space, and DEL, is noise or
		// an attack (NUL truncation, embedded CR).
		if (c < ' ' && c != '\t') || c == 0x7f {
			return command{}, errBadChar
		}
	}
	kw, rest, hasRest := bytes.Cut(line, []byte{' '})
	if len(kw) == 0 || len(kw) > maxKeyword {
		return command{}, errBadKeyword
	}
	for _, c := range kw {
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z') {
			return command{}, errBadKeyword
		}
	}
	cmd := command{Name: strings.ToUpper(string(kw))}
	if hasRest {
		cmd.Rest = string(rest)
		cmd.Args = strings.FieldsFunc(cmd.Rest, func(r rune) bool { return r == ' ' })
	}
	return cmd, nil
}

// parseMsgNumber parses a message number: decimal digits only, no sign,
// at least 1. Out-of-range values are the caller's business; huge ones
// come back as 0 with ok false.
func parseMsgNumber(s string) (n int, ok bool) {
	if s == "" || len(s) > 9 {
		return 0, false
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, false
	}
	return n, true
}

// parseLineCount parses TOP's line count: a non-negative decimal number;
// one too large to matter means "all of them".
func parseLineCount(s string) (n int, ok bool) {
	if s == "" {
		return 0, false
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	s = strings.TrimLeft(s, "0")
	if s == "" {
		return 0, true
	}
	if len(s) > 9 {
		return 1 << 30, true
	}
	n, err := strconv.Atoi(s)
	return n, err == nil
}

// Errors of decodePlain.
var (
	errBadBase64 = errors.New("invalid base64 in SASL response")
	errBadPlain  = auth.ErrMalformedPlain // what ParsePlain returns, passed on
)

// maxPlainBytes bounds a decoded PLAIN response: three identities and a
// password, none of which is anywhere near that long.
const maxPlainBytes = 2048

// decodePlain decodes a SASL PLAIN response (RFC 4616): base64 of
// authzid NUL authcid NUL passwd. authcid and passwd must not be empty,
// and no part may hold a NUL (the three parts are split on it).
func decodePlain(b64 string) (authzid, authcid, passwd string, err error) {
	if base64.StdEncoding.DecodedLen(len(b64)) > maxPlainBytes {
		return "", "", "", errBadPlain
	}
	// The decoder skips CR and LF; a response is one line and has none.
	if strings.ContainsAny(b64, "\r\n") {
		return "", "", "", errBadBase64
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(b64)
	if err != nil {
		return "", "", "", errBadBase64
	}
	return auth.ParsePlain(raw)
}
