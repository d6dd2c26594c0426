package auth

import (
	"bytes"
	"errors"

	"github.com/emersion/go-sasl"
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

// PlainServer is the server side of SASL PLAIN (RFC 4616) for the mail
// servers. go-sasl's answers a malformed message with an error that the
// protocol libraries turn into a temporary failure or a server fault,
// where the client is at fault: this one returns the protocol's client
// error, from Malformed.
type PlainServer struct {
	// Authenticate checks a well-formed message.
	Authenticate func(authzid, authcid, passwd string) error
	// Malformed returns the error that answers a malformed message (and
	// may log it); it is not a failed login: no password was given.
	Malformed func() error

	done bool
}

// Next implements sasl.Server.
func (p *PlainServer) Next(response []byte) (challenge []byte, done bool, err error) {
	switch {
	case p.done:
		return nil, false, sasl.ErrUnexpectedClientResponse
	case response == nil:
		return []byte{}, false, nil // no initial response: an empty challenge
	}
	p.done = true
	authzid, authcid, passwd, err := ParsePlain(response)
	if err != nil {
		return nil, true, p.Malformed()
	}
	return nil, true, p.Authenticate(authzid, authcid, passwd)
}
