package auth

import (
	"bytes"
	"errors"
)

// ErrMalformedPlain: a SASL PLAIN message that is not authzid NUL authcid
// NUL passwd. A server answers it as a client error (SMTP 501 5.5.2), not
// as a failed login: no password was given.
var ErrMalformedPlain = errors.New("malformed SASL PLAIN message")

// ParsePlain splits a SASL PLAIN message (RFC 4616 2), already decoded
// from base64, into its authorization identity (may be empty), user name
// and password (neither empty). Any other number of NULs, an empty name or
// password, is ErrMalformedPlain.
func ParsePlain(msg []byte) (authzid, authcid, passwd string, err error) {
	parts := bytes.SplitN(msg, []byte{0}, 4) // a fourth part is one too many
	if len(parts) != 3 || len(parts[1]) == 0 || len(parts[2]) == 0 {
		return "", "", "", ErrMalformedPlain
	}
	return string(parts[0]), string(parts[1]), string(parts[2]), nil
}
