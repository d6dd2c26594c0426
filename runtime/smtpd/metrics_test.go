package smtpd

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-sasl"

	"mailfountain.dev/mailfountain/runtime/connlimit"
	"mailfountain.dev/mailfountain/runtime/metrics/metricstest"
)

func format(n map[string]int) string {
	var lines []string
	for _, k := range slices.Sorted(maps.Keys(n)) {
		lines = append(lines, fmt.Sprintf("%s=%d", k, n[k]))
	}
	return strings.Join(lines, ", ")
}

// TestMetrics: every session, refused connection, reply (those the server
// writes itself included) and message received whole reaches the hooks,
// once, with its listener.
func TestMetrics(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		edit  func(*Config)
		drive func(t *testing.T, e *env)
		want  map[string]int
	}{
		{
			name: "MX delivery",
			drive: func(t *testing.T, e *env) {
				rc := dialData(t, e.mx) // 220, EHLO 250, MAIL 250, RCPT 250, DATA 354
				rc.send(strings.TrimSuffix(testMessage("metrics"), "\r\n") + "\r\n.")
				rc.expectReply("250 2.0.0 OK id=")
				rc.expect("QUIT", "221 ")
				rc.closed()
			},
			want: map[string]int{"session mx": 1, "reply mx 2xx": 6, "reply mx 3xx": 1, "delivery mx delivered": 1},
		},
		{
			name: "MX refusals",
			drive: func(t *testing.T, e *env) {
				rc := dialRaw(t, e.mx)
				rc.expectReply("220 ")
				rc.expect("EHLO client.test", "250 ")
				rc.expect("MAIL FROM:<a@remote.test>", "250 ")
				rc.expect("RCPT TO:<nobody@example.test>", "550 ")
				rc.expect("RCPT TO:<alice@example.test>", "250 ")
				rc.expect("DATA", "354 ")
				rc.send("Subject: bare\rCR\r\n\r\nbody\r\n.")
				rc.expectReply("550 5.6.0 ")
				rc.expect("QUIT", "221 ")
				rc.closed()
			},
			want: map[string]int{"session mx": 1, "reply mx 2xx": 5, "reply mx 3xx": 1, "reply mx 5xx": 2, "delivery mx refused": 1},
		},
		{
			name: "too many errors: the server's own 421",
			edit: func(c *Config) { c.MaxErrors = 2 },
			drive: func(t *testing.T, e *env) {
				rc := dialRaw(t, e.mx)
				rc.expectReply("220 ")
				rc.expect("EHLO client.test", "250 ")
				rc.expect("FOO", "501 ")
				rc.send("BAR")
				if lines := rc.closed(); len(lines) != 2 || !strings.HasPrefix(lines[1], "421 4.7.0 ") {
					t.Fatalf("after the second error: %q, want 501 then 421 and close", lines)
				}
			},
			want: map[string]int{"session mx": 1, "reply mx 2xx": 2, "reply mx 5xx": 2, "reply mx 4xx": 1},
		},
		{
			name: "pool full",
			edit: func(c *Config) { c.MaxConnections = 1 },
			drive: func(t *testing.T, e *env) {
				rc := dialRaw(t, e.mx)
				rc.expectReply("220 ")
				wantRefused(t, e.mx, true)
				rc.expect("QUIT", "221 ")
				rc.closed()
			},
			want: map[string]int{"session mx": 1, "reply mx 2xx": 2, "refused mx " + connlimit.TooMany: 1},
		},
		{
			name: "submission: a failed login",
			drive: func(t *testing.T, e *env) {
				c := e.client(e.sub, startTLS) // 220, EHLO 250, STARTTLS 220
				if err := c.Auth(sasl.NewPlainClient("", "alice@example.test", "wrong")); err == nil {
					t.Fatal("AUTH with a wrong password succeeded")
				} // EHLO 250, 535, and 501 to the "*" go-smtp's client sends then
				if err := c.Quit(); err != nil {
					t.Fatal(err)
				}
			},
			want: map[string]int{"session submission": 1, "reply submission 2xx": 5, "reply submission 5xx": 2},
		},
		{
			name: "submissions: a message",
			drive: func(t *testing.T, e *env) {
				c := e.client(e.subs, implicitTLS) // 220, EHLO 250
				if err := c.Auth(sasl.NewPlainClient("", "alice@example.test", alicePassword)); err != nil {
					t.Fatal(err)
				} // 235
				if err := send(c, "alice@example.test", []string{"bob@example.test"}, messageFrom("alice@example.test", "m465")); err != nil {
					t.Fatal(err)
				} // MAIL 250, RCPT 250, DATA 354, 250
				if err := c.Quit(); err != nil {
					t.Fatal(err)
				} // 221
			},
			want: map[string]int{"session submissions": 1, "reply submissions 2xx": 7, "reply submissions 3xx": 1, "delivery submissions delivered": 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := &metricstest.Counts{}
			e := newEnv(t, func(c *Config) {
				c.Metrics = m
				if tt.edit != nil {
					tt.edit(c)
				}
			})
			tt.drive(t, e)
			// Serve returns once every connection is over: every hook
			// has been called.
			e.stop()
			if got, want := format(m.Counts()), format(tt.want); got != want {
				t.Errorf("metrics:\n got %s\nwant %s", got, want)
			}
		})
	}
}

// TestNoMetrics: a server without Metrics serves as before.
func TestNoMetrics(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	rc := dialData(t, e.mx)
	rc.send(strings.TrimSuffix(testMessage("nometrics"), "\r\n") + "\r\n.")
	rc.expectReply("250 2.0.0 OK id=")
	e.wantMailbox("example.test", "alice", 1)
}
