package smtp_test

// MailFountain's patch: Server.TooLarge is the reply to a message over
// MaxMessageBytes at MAIL SIZE= and at BDAT.

import (
	"io"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"
)

func TestServerTooLargeReply(t *testing.T) {
	custom := &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4}, Message: "Message size exceeds the 50-byte limit"}
	for _, tt := range []struct {
		name     string
		tooLarge *smtp.SMTPError
		want     string
	}{
		{"custom", custom, "552 5.3.4 Message size exceeds the 50-byte limit"},
		{"upstream", nil, "552 5.3.4 Max message size exceeded"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, s, c, scanner, _ := testServerEhlo(t, func(s *smtp.Server) {
				s.MaxMessageBytes = 50
				s.TooLarge = tt.tooLarge
			})
			defer s.Close()
			defer c.Close()
			cmd := func(line, want string) {
				t.Helper()
				io.WriteString(c, line)
				scanner.Scan()
				if !strings.HasPrefix(scanner.Text(), want) {
					t.Fatalf("%q: %q, want %q", line, scanner.Text(), want)
				}
			}
			cmd("MAIL FROM:<root@example.org> SIZE=51\r\n", tt.want)
			cmd("MAIL FROM:<root@example.org> SIZE=50\r\n", "250 ")
			cmd("RCPT TO:<root@example.org>\r\n", "250 ")
			cmd("BDAT 51 LAST\r\n"+strings.Repeat("x", 51), tt.want)
			cmd("NOOP\r\n", "250 ")
		})
	}
}
