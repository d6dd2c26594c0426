package tests

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"
)

// mxConnections is the daemon's bound of MX connections (smtpd's
// DefaultMaxConnections); loopback clients are bounded by it alone.
const mxConnections = 200

// TestMailSubmissionWhileMXFull: strangers holding every connection of
// the MX do not keep the users from sending with smtplib on 587 and 465,
// which have connections of their own.
func TestMailSubmissionWhileMXFull(t *testing.T) {
	t.Parallel()
	needTool(t, "python3")
	d := startMail(t, stateOpts{}, "smtp", "submission", "submissions")
	p := startPy(t, d)

	greeting := func() string {
		t.Helper()
		c, err := net.DialTimeout("tcp", d.addr("smtp"), 10*time.Second)
		if err != nil {
			t.Fatalf("connect to the MX: %v", err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(20 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			t.Fatalf("greeting of the MX: %v", err)
		}
		return line
	}
	for i := range mxConnections {
		if g := greeting(); !strings.HasPrefix(g, "220 ") {
			t.Fatalf("MX connection %d: %q, want 220", i+1, g)
		}
	}
	if g := greeting(); !strings.HasPrefix(g, "421 4.7.0 ") {
		t.Fatalf("MX connection %d: %q, want 421 4.7.0 (too many connections)", mxConnections+1, g)
	}

	for _, tt := range []struct{ c, server, tag string }{
		{"a", "submission", "pool-587"},
		{"b", "submissions", "pool-465"},
	} {
		p.connect(tt.c, tt.server)
		if tt.server == "submission" {
			if code, msg := p.starttls(tt.c).reply(); code != 220 {
				t.Fatalf("STARTTLS on %s: %d %s", tt.server, code, msg)
			}
		}
		p.call(tt.c, "ehlo", "laptop")
		if code, msg := p.smtpAuth(tt.c, "PLAIN", addr("rene.ricard"), renePassword).reply(); code != 235 {
			t.Fatalf("AUTH PLAIN on %s while the MX is full: %d %s, want 235", tt.server, code, msg)
		}
		r := p.call(tt.c, "sendmail", addr("rene.ricard"), []string{addr("andre.mouve")}, message(addr("rene.ricard"), addr("andre.mouve"), tt.tag, "Salut\n"))
		if !r.OK || string(r.Value) != "{}" {
			t.Fatalf("sendmail on %s while the MX is full: %s, want no refused recipient", tt.server, r)
		}
		if got := withHeader(d.inbox(t, "andre.mouve"), "Subject", tt.tag); len(got) != 1 {
			t.Fatalf("%s: %d copies delivered, want 1", tt.tag, len(got))
		}
		p.call(tt.c, "quit")
	}
}
