package imapd

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"mailfountain.dev/mailfountain/runtime/auth"
)

// TestLoginLockoutPerAccount checks that an account hammered from an
// address is refused there, over LOGIN and AUTHENTICATE, while another
// account still logs in from the same address.
func TestLoginLockoutPerAccount(t *testing.T) {
	e := newEnv(t)
	e.limits.MaxLoginFailures = 100
	e.auth = auth.NewAuthenticatorLimits(e.st, nil, auth.Limits{AccountFailures: 3, FailureEvery: time.Hour})
	e.start()
	r := dialRaw(t, e.tlsAddr, true)
	for i := range 3 {
		if _, st := r.cmd("LOGIN %s wrong", testUser); !strings.HasPrefix(st, "NO [AUTHENTICATIONFAILED]") {
			t.Fatalf("failure %d: %q", i, st)
		}
	}
	plain := base64.StdEncoding.EncodeToString([]byte("\x00" + testUser + "\x00" + testPassword))
	for _, c := range []string{"LOGIN " + testUser + " " + testPassword, "LOGIN RENE@MA-SOCIETE.FR " + testPassword, "AUTHENTICATE PLAIN " + plain} {
		if _, st := r.cmd("%s", c); !strings.HasPrefix(st, "NO [UNAVAILABLE]") {
			t.Errorf("%s after 3 failures: %q, want NO [UNAVAILABLE]", c, st)
		}
	}
	if _, st := r.cmd("LOGIN %s %s", otherUser, testPassword); !strings.HasPrefix(st, "OK") {
		t.Fatalf("the other account from the same address: %q", st)
	}
	r2 := dialRaw(t, e.tlsAddr, true)
	if _, st := r2.cmd("LOGIN %s %s", testUser, testPassword); !strings.HasPrefix(st, "NO [UNAVAILABLE]") {
		t.Errorf("the hammered account after the other logged in: %q, want NO [UNAVAILABLE]", st)
	}
}
