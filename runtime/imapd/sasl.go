package imapd

import (
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-sasl"

	"mailfountain.dev/mailfountain/runtime/auth"
)

// The session has its own PLAIN: imapserver's answers a malformed message
// "NO [SERVERBUG] Internal server error", a server fault, where the client
// is at fault (BAD).
var _ imapserver.SessionSASL = (*session)(nil)

func (s *session) AuthenticateMechanisms() []string { return []string{sasl.Plain} }

func (s *session) Authenticate(mech string) (sasl.Server, error) {
	if mech != sasl.Plain {
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Text: "SASL mechanism not supported"}
	}
	return &plainServer{s: s}, nil
}

// plainServer is the server side of PLAIN (RFC 4616) for a session.
type plainServer struct {
	s    *session
	done bool
}

func (p *plainServer) Next(response []byte) (challenge []byte, done bool, err error) {
	switch {
	case p.done:
		return nil, false, sasl.ErrUnexpectedClientResponse
	case response == nil:
		return []byte{}, false, nil // no initial response: an empty challenge
	}
	p.done = true
	identity, username, password, err := auth.ParsePlain(response)
	if err != nil {
		p.s.in.srv.log.Info("imap: malformed AUTHENTICATE PLAIN response", "remote", p.s.remote)
		return nil, true, &imap.Error{Type: imap.StatusResponseTypeBad, Code: imap.ResponseCodeClientBug,
			Text: "Malformed SASL PLAIN response"}
	}
	if identity != "" && !strings.EqualFold(identity, username) {
		// Nobody may act for another user.
		return nil, true, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeAuthorizationFailed,
			Text: "SASL identity not supported"}
	}
	return nil, true, p.s.Login(username, password)
}
