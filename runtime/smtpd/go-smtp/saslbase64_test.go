package smtp_test

// MailFountain's patch: a SASL response that is not base64 is answered
// 501 5.5.2 (RFC 4954 4), not 454 4.7.0.

import (
	"io"
	"strings"
	"testing"
)

func TestServerAuthInvalidBase64(t *testing.T) {
	tests := []struct {
		name  string
		lines []string // the last one gets the 501
	}{
		{"initial response", []string{"AUTH PLAIN !!!"}},
		{"initial response, bad padding", []string{"AUTH PLAIN AHVzZXJuYW1lAHBhc3N3b3Jk="}},
		{"continuation", []string{"AUTH PLAIN", "not base64"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, s, c, scanner, _ := testServerEhlo(t)
			defer s.Close()
			defer c.Close()
			for _, l := range tt.lines {
				io.WriteString(c, l+"\r\n")
				scanner.Scan()
			}
			if !strings.HasPrefix(scanner.Text(), "501 5.5.2 ") {
				t.Fatalf("%q: got %q, want 501 5.5.2", tt.lines, scanner.Text())
			}
			// The session goes on: a valid AUTH still succeeds.
			io.WriteString(c, "AUTH PLAIN AHVzZXJuYW1lAHBhc3N3b3Jk\r\n")
			scanner.Scan()
			if !strings.HasPrefix(scanner.Text(), "235 ") {
				t.Fatalf("AUTH after the 501: %q", scanner.Text())
			}
		})
	}
}
