package smtpd

import (
	"testing"
	"time"

	"mailfountain.dev/mailfountain/runtime/auth"
	"mailfountain.dev/mailfountain/runtime/store"
)

// legacyEnv is an env whose submission port takes AUTH in clear from
// loopback, so that raw dialogues need no TLS; limits, if not zero, are
// its Authenticator's.
func legacyEnv(t *testing.T, limits auth.Limits) *env {
	t.Helper()
	return newEnv(t, func(c *Config) {
		set := c.Settings.Load()
		set.LegacyPlainAuth = true
		c.Settings.Store(set)
		if limits != (auth.Limits{}) {
			c.Auth = auth.NewAuthenticatorLimits(c.Directory.(*store.Store), nil, limits)
		}
	})
}

func authPlain(user, password string) string {
	return "AUTH PLAIN " + b64("\x00"+user+"\x00"+password)
}

// TestSubmissionAuthLockoutPerAccount checks that an account hammered from
// an address is refused there while another account still logs in from
// the same address (one office behind one NAT).
func TestSubmissionAuthLockoutPerAccount(t *testing.T) {
	t.Parallel()
	e := legacyEnv(t, auth.Limits{AccountFailures: 3, FailureEvery: time.Hour})
	rc := dialRaw(t, e.sub)
	rc.reply()
	rc.ehlo()
	for range 3 {
		rc.expect(authPlain("alice@example.test", "guess"), "535 5.7.8")
	}
	rc.expect(authPlain("alice@example.test", alicePassword), "454 4.7.0")
	rc.expect(authPlain("ALICE@example.test", alicePassword), "454 4.7.0")
	rc.expect(authPlain("bob@example.test", bobPassword), "235 2.0.0")

	rc2 := dialRaw(t, e.sub)
	rc2.reply()
	rc2.ehlo()
	rc2.expect("AUTH LOGIN "+b64("alice@example.test"), "334 ")
	rc2.expect(b64(alicePassword), "454 4.7.0")
	e.submit("dave@other.test", davePassword)
}
