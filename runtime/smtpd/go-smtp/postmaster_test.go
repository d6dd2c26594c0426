package smtp_test

// MailFountain's patch: RCPT TO:<Postmaster> without a domain (RFC 5321
// 4.5.1).

import (
	"io"
	"strings"
	"testing"
)

func TestServerBarePostmaster(t *testing.T) {
	tests := []struct {
		rcpt string
		code string // reply to RCPT
		to   string // the recipient the session gets
	}{
		{"<postmaster>", "250 ", "postmaster"},
		{"<Postmaster>", "250 ", "Postmaster"},
		{" <POSTMASTER>", "250 ", "POSTMASTER"},
		{"<postmaster@example.org>", "250 ", "postmaster@example.org"},
		{"<postmaster> FOO=BAR", "5", ""},
		{"<postmasterx>", "501 ", ""},
		{"<abuse>", "501 ", ""},
	}
	for _, tt := range tests {
		t.Run(tt.rcpt, func(t *testing.T) {
			be, s, c, scanner := testServerAuthenticated(t)
			defer s.Close()
			defer c.Close()
			io.WriteString(c, "MAIL FROM:<root@example.org>\r\n")
			scanner.Scan()
			io.WriteString(c, "RCPT TO:"+tt.rcpt+"\r\n")
			scanner.Scan()
			if !strings.HasPrefix(scanner.Text(), tt.code) {
				t.Fatalf("RCPT TO:%s: %s, want %s", tt.rcpt, scanner.Text(), tt.code)
			}
			if tt.to == "" {
				return
			}
			io.WriteString(c, "DATA\r\n")
			scanner.Scan()
			io.WriteString(c, "Subject: x\r\n\r\nhi\r\n.\r\n")
			scanner.Scan()
			if !strings.HasPrefix(scanner.Text(), "250 ") {
				t.Fatalf("DATA: %s", scanner.Text())
			}
			if len(be.messages) != 1 || len(be.messages[0].To) != 1 || be.messages[0].To[0] != tt.to {
				t.Fatalf("the session got %+v, want one recipient %q", be.messages, tt.to)
			}
		})
	}
}
