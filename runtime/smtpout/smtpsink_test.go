package smtpout

import (
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"mailfountain.dev/mailfountain/runtime/testenv"
)

// startSMTPSink runs Postfix's smtp-sink on addr with args until the test
// ends.
func startSMTPSink(t *testing.T, addr string, args ...string) {
	t.Helper()
	bin := testenv.NeedTool(t, "smtp-sink")
	if os.Geteuid() == 0 {
		args = append([]string{"-u", "nobody"}, args...)
	}
	cmd := exec.Command(bin, append(args, addr, "64")...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return
		}
	}
	t.Fatalf("smtp-sink did not listen on %s: %s", addr, out.String())
}

// TestSMTPSink: the client against Postfix's smtp-sink, whose options
// script the answers.
func TestSMTPSink(t *testing.T) {
	cases := []struct {
		name      string
		args      []string
		delivered bool
		permanent bool
		blocked   bool
		code      int
	}{
		{name: "accepted, pipelined", args: nil, delivered: true, code: 250},
		{name: "accepted, no pipelining", args: []string{"-p"}, delivered: true, code: 250},
		{name: "RCPT 4xx", args: []string{"-r", "rcpt"}, code: 450},
		{name: "RCPT 5xx", args: []string{"-f", "rcpt"}, permanent: true, code: 500},
		{name: "MAIL 5xx", args: []string{"-f", "mail"}, permanent: true, code: 500},
		{name: "end of data 4xx", args: []string{"-r", "."}, code: 450},
		{name: "block answer", args: []string{"-f", "rcpt", "-B", "554 5.7.1 Service unavailable; Client host [127.0.0.1] blocked using zen.spamhaus.org"}, permanent: true, blocked: true, code: 554},
		{name: "greeting 4xx", args: []string{"-r", "connect"}, code: 450},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			z := startDNS(t, `dest.test. MX 10 mx1.dest.test.`, `mx1.dest.test. A 127.0.0.2`)
			port := freePort(t)
			startSMTPSink(t, at("127.0.0.2", port), c.args...)
			cl := newClient(t, Config{Resolver: z.resolver(), Port: port})
			for range 2 { // the second over the same connection, when it succeeds
				res := send(t, cl, msg("a@dest.test", "b@dest.test"))
				for _, r := range res {
					if r.Delivered() != c.delivered || r.Permanent != c.permanent || r.Blocked != c.blocked || r.Code != c.code {
						t.Fatalf("want delivered=%v permanent=%v blocked=%v code %d, got %s", c.delivered, c.permanent, c.blocked, c.code, describe(res))
					}
				}
			}
		})
	}
}
