package imapd

import (
	"encoding/base64"
	"net/netip"
	"strings"
	"testing"
	"time"

	"mailfountain.dev/mailfountain/runtime/auth"
	"mailfountain.dev/mailfountain/runtime/mailconf"
)

func TestAuthPolicy(t *testing.T) {
	e := newEnv(t)
	e.start()
	plainAuth := base64.StdEncoding.EncodeToString([]byte("\x00" + testUser + "\x00" + testPassword))
	tests := []struct {
		name        string
		legacy      bool
		conn        string // "plain", "starttls", "tls"
		command     string
		wantCaps    []string
		notCaps     []string
		wantPrefix  string
		wantContain string
	}{
		{"plain, legacy off: LOGIN", false, "plain", "LOGIN " + testUser + " " + testPassword,
			[]string{"LOGINDISABLED", "STARTTLS", "IMAP4rev1", "IMAP4rev2"}, []string{"AUTH=PLAIN"}, "NO", "[PRIVACYREQUIRED]"},
		{"plain, legacy off: AUTHENTICATE", false, "plain", "AUTHENTICATE PLAIN " + plainAuth,
			[]string{"LOGINDISABLED"}, []string{"AUTH=PLAIN"}, "NO", "[PRIVACYREQUIRED]"},
		{"plain, legacy on, loopback", true, "plain", "LOGIN " + testUser + " " + testPassword,
			[]string{"AUTH=PLAIN"}, []string{"LOGINDISABLED"}, "OK", ""},
		{"STARTTLS, legacy off", false, "starttls", "LOGIN " + testUser + " " + testPassword,
			[]string{"AUTH=PLAIN"}, []string{"LOGINDISABLED", "STARTTLS"}, "OK", ""},
		{"STARTTLS, AUTHENTICATE PLAIN", false, "starttls", "AUTHENTICATE PLAIN " + plainAuth,
			[]string{"AUTH=PLAIN"}, nil, "OK", ""},
		{"implicit TLS", false, "tls", "LOGIN " + testUser + " " + testPassword,
			[]string{"AUTH=PLAIN"}, []string{"STARTTLS", "LOGINDISABLED"}, "OK", ""},
		{"address in capitals", false, "tls", "LOGIN RENE@MA-SOCIETE.FR " + testPassword,
			nil, nil, "OK", ""},
		{"wrong password", false, "tls", "LOGIN " + testUser + " wrong",
			nil, nil, "NO", "[AUTHENTICATIONFAILED]"},
		{"local part only", false, "tls", "LOGIN rene " + testPassword,
			nil, nil, "NO", "[AUTHENTICATIONFAILED]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mailconf.Default()
			s.LegacyPlainAuth = tt.legacy
			e.live.Store(s)
			r := dialRaw(t, map[string]string{"plain": e.addr, "starttls": e.addr, "tls": e.tlsAddr}[tt.conn], tt.conn == "tls")
			if tt.conn == "starttls" {
				r.startTLS()
			}
			lines, st := r.cmd("CAPABILITY")
			if !strings.HasPrefix(st, "OK") || len(lines) != 1 {
				t.Fatalf("CAPABILITY: %q %q", lines, st)
			}
			caps := strings.Fields(lines[0])
			for _, c := range tt.wantCaps {
				if !contains(caps, c) {
					t.Errorf("capabilities %q lack %s", caps, c)
				}
			}
			for _, c := range tt.notCaps {
				if contains(caps, c) {
					t.Errorf("capabilities %q have %s", caps, c)
				}
			}
			_, st = r.cmd("%s", tt.command)
			if !strings.HasPrefix(st, tt.wantPrefix) || !strings.Contains(st, tt.wantContain) {
				t.Errorf("%s: got %q, want %s %s", strings.Fields(tt.command)[0], st, tt.wantPrefix, tt.wantContain)
			}
		})
	}
	e.live.Store(mailconf.Default())
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

func TestPlainAuthAllowed(t *testing.T) {
	lan := netip.MustParsePrefix("192.168.1.0/24")
	tests := []struct {
		legacy bool
		remote string
		want   bool
	}{
		{false, "127.0.0.1", false},
		{true, "127.0.0.1", true},
		{true, "::1", true},
		{true, "192.168.1.20", true},
		{true, "::ffff:192.168.1.20", true},
		{false, "192.168.1.20", false},
		{true, "203.0.113.5", false},
		{true, "192.168.2.20", false},
	}
	for _, tt := range tests {
		live := new(mailconf.Live)
		s := mailconf.Default()
		s.LAN, s.LegacyPlainAuth = []netip.Prefix{lan}, tt.legacy
		live.Store(s)
		if got := plainAuthAllowed(live, netip.MustParseAddr(tt.remote)); got != tt.want {
			t.Errorf("legacy=%v remote=%s: %v, want %v", tt.legacy, tt.remote, got, tt.want)
		}
	}
}

func TestLoginFailuresBye(t *testing.T) {
	e := newEnv(t)
	e.start()
	authPlain := func(password string) string {
		return "AUTHENTICATE PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00"+testUser+"\x00"+password))
	}
	for _, mech := range []string{"LOGIN", "AUTHENTICATE"} {
		t.Run(mech, func(t *testing.T) {
			command := func(password string) string {
				if mech == "LOGIN" {
					return "LOGIN " + testUser + " " + password
				}
				return authPlain(password)
			}
			r := dialRaw(t, e.tlsAddr, true)
			for i := range 2 {
				if _, st := r.cmd("%s", command("wrong")); !strings.Contains(st, "[AUTHENTICATIONFAILED]") {
					t.Fatalf("failure %d: %q", i, st)
				}
			}
			// The third failure ends the session.
			if _, err := r.conn.Write([]byte("a9 " + command("wrong") + "\r\n")); err != nil {
				t.Fatal(err)
			}
			closed, got := r.closed(5 * time.Second)
			if !closed || !strings.Contains(got, "* BYE") {
				t.Errorf("after 3 failures: closed=%v, got %q", closed, got)
			}
		})
	}
}

func TestTooManyFailures(t *testing.T) {
	e := newEnv(t)
	e.auth = auth.NewAuthenticatorLimits(e.st, nil, auth.Limits{AccountFailures: 1, FailureEvery: time.Hour})
	e.start()
	r := dialRaw(t, e.tlsAddr, true)
	if _, st := r.cmd("LOGIN %s wrong", testUser); !strings.Contains(st, "[AUTHENTICATIONFAILED]") {
		t.Fatalf("first failure: %q", st)
	}
	// Refused now, right password or not.
	if _, st := r.cmd("LOGIN %s %s", testUser, testPassword); !strings.HasPrefix(st, "NO [UNAVAILABLE]") {
		t.Errorf("after the limit: %q, want NO [UNAVAILABLE]", st)
	}
}

func TestAuthTimeout(t *testing.T) {
	e := newEnv(t)
	e.limits.AuthTimeout = time.Second
	settings := mailconf.Default()
	settings.LegacyPlainAuth = true // no TLS handshake to slow the login down
	e.live.Store(settings)
	e.start()
	r := dialRaw(t, e.addr, false)
	start := time.Now()
	closed, got := r.closed(5 * time.Second)
	if !closed || !strings.Contains(got, "* BYE") {
		t.Errorf("not logged in: closed=%v, got %q", closed, got)
	}
	if d := time.Since(start); d < 900*time.Millisecond {
		t.Errorf("closed after %v, want 1s", d)
	}
	// A logged-in session is not affected.
	r = dialRaw(t, e.addr, false)
	if _, st := r.cmd("LOGIN %s %s", testUser, testPassword); !strings.HasPrefix(st, "OK") {
		t.Fatal(st)
	}
	if closed, got := r.closed(1500 * time.Millisecond); closed {
		t.Errorf("logged in, closed after the auth timeout: %q", got)
	}
}

func TestIdleTimeout(t *testing.T) {
	e := newEnv(t)
	e.limits.IdleTimeout = 500 * time.Millisecond
	e.start()
	r := dialRaw(t, e.tlsAddr, true)
	if _, st := r.cmd("LOGIN %s %s", testUser, testPassword); !strings.HasPrefix(st, "OK") {
		t.Fatal(st)
	}
	start := time.Now()
	closed, _ := r.closed(5 * time.Second)
	if !closed {
		t.Fatal("silent connection not closed")
	}
	if d := time.Since(start); d < 400*time.Millisecond || d > 3*time.Second {
		t.Errorf("closed after %v, want about 500ms", d)
	}
}

func TestConnectionLimits(t *testing.T) {
	e := newEnv(t)
	e.limits.MaxConnsPerIP = 2
	e.start()
	a := dialRaw(t, e.addr, false)
	dialRaw(t, e.tlsAddr, true) // the limits span both listeners
	for _, c := range []*raw{dialRaw(t, e.addr, false), dialRaw(t, e.tlsAddr, true)} {
		if !strings.HasPrefix(c.greeting, "* BYE") {
			t.Errorf("over the limit, greeting %q", c.greeting)
		}
		if closed, _ := c.closed(5 * time.Second); !closed {
			t.Error("connection over the limit not closed")
		}
	}
	// Closing one makes room again.
	a.cmd("LOGOUT")
	a.conn.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		d := dialRaw(t, e.addr, false)
		if strings.HasPrefix(d.greeting, "* OK") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no room after a connection closed")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
