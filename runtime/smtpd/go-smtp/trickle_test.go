package smtp_test

// MailFountain's patch: a read deadline passing in the middle of a line or
// of a BDAT chunk ends the connection with 421, whatever came before it
// (see Conn.readLine and lineLimitReader).

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

func TestServerTrickle(t *testing.T) {
	const timeout = 300 * time.Millisecond
	tests := []struct {
		name   string
		before string // sent at once, each line's reply read
		slow   string // then trickled, a byte every 50 ms
	}{
		// Upstream ran "NOOP xxxx" (what came before the deadline) as a
		// command, answered 250 and read on with a fresh deadline.
		{"command line", "", "NOOP " + strings.Repeat("x", 60) + "\r\n"},
		{"command in a transaction", "MAIL FROM:<root@example.org>\r\n", "RCPT TO:<" + strings.Repeat("r", 60) + "@example.org>\r\n"},
		// Upstream answered 554 with the read error, then read the rest
		// of the chunk as commands.
		{"BDAT chunk", "MAIL FROM:<root@example.org>\r\nRCPT TO:<root@example.org>\r\n", "BDAT 60 LAST\r\n" + strings.Repeat("NOOP\r\n", 10)},
		// Upstream took the fragment for the SASL response.
		{"AUTH response", "AUTH PLAIN\r\n", "AHVzZXJuYW1lAHBhc3N3b3Jk\r\n"},
	}
	for _, tt := range tests {
		tt := tt // the module's go version predates per-iteration variables
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, s, c, scanner, _ := testServerEhlo(t, func(s *smtp.Server) { s.ReadTimeout = timeout })
			defer s.Close()
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			for _, line := range strings.SplitAfter(tt.before, "\r\n") {
				if line == "" {
					continue
				}
				io.WriteString(c, line)
				if !scanner.Scan() || !strings.HasPrefix(scanner.Text(), "250 ") && !strings.HasPrefix(scanner.Text(), "334 ") {
					t.Fatalf("%q: %q, want 250 or 334", line, scanner.Text())
				}
			}
			start := time.Now()
			go trickle(c, tt.slow, 50*time.Millisecond)
			var replies []string
			for scanner.Scan() {
				replies = append(replies, scanner.Text())
			}
			if err := scanner.Err(); err != nil && !isReset(err) {
				t.Fatalf("after %q: %v, want the connection closed", replies, err)
			}
			if len(replies) != 1 || !strings.HasPrefix(replies[0], "421 4.4.2 ") {
				t.Fatalf("replies %q, want only 421 4.4.2 and close", replies)
			}
			// The trickle takes 3 s or more.
			if d := time.Since(start); d > 2*time.Second {
				t.Fatalf("closed after %v, read timeout %v", d, timeout)
			}
		})
	}
}

// trickle writes s to c a byte at a time.
func trickle(c net.Conn, s string, every time.Duration) {
	for i := 0; i < len(s); i++ {
		if _, err := c.Write([]byte{s[i]}); err != nil {
			return
		}
		time.Sleep(every)
	}
}

func isReset(err error) bool {
	return strings.Contains(err.Error(), "reset by peer")
}
