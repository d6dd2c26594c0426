package imapd

import (
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-sasl"

	"mailfountain.dev/mailfountain/runtime/auth"
)

// The session has its own PLAIN, auth.PlainServer as SMTP's: a malformed
// message is logged and answered BAD [CLIENTBUG] (the patched imapserver's
// PLAIN answers a bare BAD, upstream's NO [SERVERBUG]), and the identity
// may be the name in any case.
var _ imapserver.SessionSASL = (*session)(nil)

func (s *session) AuthenticateMechanisms() []string { return []string{sasl.Plain} }

func (s *session) Authenticate(mech string) (sasl.Server, error) {
	if mech != sasl.Plain {
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Text: "SASL mechanism not supported"}
	}
	return &auth.PlainServer{Authenticate: func(identity, username, password string) error {
		if identity != "" && !strings.EqualFold(identity, username) {
			// Nobody may act for another user.
			return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeAuthorizationFailed,
				Text: "SASL identity not supported"}
		}
		return s.Login(username, password)
	}, Malformed: func() error {
		s.in.srv.log.Info("imap: malformed AUTHENTICATE PLAIN response", "remote", s.remote)
		return &imap.Error{Type: imap.StatusResponseTypeBad, Code: imap.ResponseCodeClientBug,
			Text: "Malformed SASL PLAIN response"}
	}}, nil
}
