package smtpd

import (
	"context"
	"slices"
	"strings"
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

// TestSubmissionAuthTiming checks that a login for a name that does not
// exist, or for an account without a password, takes as long as a wrong
// password for an account whose hash is the argon2id HashPassword makes:
// the time of the answer does not tell which names exist. Medians over
// several tries and a generous bound keep it steady under load; before the
// dummy hash, the ratio was about 0.01.
func TestSubmissionAuthTiming(t *testing.T) {
	t.Parallel()
	e := legacyEnv(t, auth.Limits{})
	ctx := context.Background()
	hash, err := auth.HashPassword(alicePassword)
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.st.UpdateDirectory(ctx, func(tx *store.DirectoryTx) error {
		return tx.PutAccount(ctx, store.Account{Domain: "example.test", ID: "alice", Name: "Alice", PasswordHash: hash})
	})
	if err != nil {
		t.Fatal(err)
	}
	kinds := []struct{ name, user string }{
		{"wrong password", "alice@example.test"},
		{"unknown name", "nobody@example.test"},
		{"no password", "carol@example.test"},
	}
	const tries = 5
	took := make([][]time.Duration, len(kinds))
	for range tries {
		rc := dialRaw(t, e.sub)
		rc.reply()
		rc.ehlo()
		for i, k := range kinds {
			start := time.Now()
			rc.expect(authPlain(k.user, "not-the-password"), "535 5.7.8")
			took[i] = append(took[i], time.Since(start))
		}
	}
	medians := make([]time.Duration, len(kinds))
	for i := range kinds {
		slices.Sort(took[i])
		medians[i] = took[i][tries/2]
	}
	for i, k := range kinds[1:] {
		if ratio := float64(medians[i+1]) / float64(medians[0]); ratio < 0.5 {
			t.Errorf("%s: median %v, %.3f of a wrong password's %v; want at least 0.5", k.name, medians[i+1], ratio, medians[0])
		}
	}
	t.Logf("medians: %v", medians)
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

// TestSubmissionMalformedSASL checks that a malformed AUTH response is a
// client error, 501 5.5.2 (RFC 4954 4), not the temporary failure 454
// 4.7.0 that invites retries, and that it counts as no failed login.
func TestSubmissionMalformedSASL(t *testing.T) {
	t.Parallel()
	// One failure would lock alice out: the malformed ones must not count.
	e := legacyEnv(t, auth.Limits{AccountFailures: 1, FailureEvery: time.Hour})
	const user = "alice@example.test"
	tests := []struct {
		name  string
		lines []string // each gets a 334 but the last, which gets the 501
	}{
		{"PLAIN, not base64", []string{"AUTH PLAIN !!!"}},
		{"PLAIN, bad padding", []string{"AUTH PLAIN " + b64("\x00"+user+"\x00x") + "="}},
		{"PLAIN, empty", []string{"AUTH PLAIN ="}},
		{"PLAIN, no NUL", []string{"AUTH PLAIN " + b64(user+alicePassword)}},
		{"PLAIN, one NUL", []string{"AUTH PLAIN " + b64(user+"\x00"+alicePassword)}},
		{"PLAIN, extra NUL", []string{"AUTH PLAIN " + b64("\x00"+user+"\x00"+alicePassword+"\x00")}},
		{"PLAIN, NUL in the password", []string{"AUTH PLAIN " + b64("\x00"+user+"\x00alice\x00"+alicePassword)}},
		{"PLAIN, empty user", []string{"AUTH PLAIN " + b64("\x00\x00"+alicePassword)}},
		{"PLAIN, empty password", []string{"AUTH PLAIN " + b64("\x00"+user+"\x00")}},
		{"PLAIN continuation, not base64", []string{"AUTH PLAIN", "!!!"}},
		{"PLAIN continuation, empty line", []string{"AUTH PLAIN", ""}},
		{"PLAIN continuation, empty", []string{"AUTH PLAIN", "="}},
		{"PLAIN continuation, extra NULs", []string{"AUTH PLAIN", b64("\x00\x00" + user + "\x00" + alicePassword)}},
		{"LOGIN, user not base64", []string{"AUTH LOGIN !!!"}},
		{"LOGIN continuation, user not base64", []string{"AUTH LOGIN", "!!!"}},
		{"LOGIN continuation, password not base64", []string{"AUTH LOGIN", b64(user), "!!!"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := dialRaw(t, e.sub)
			rc.reply()
			rc.ehlo()
			for _, l := range tt.lines[:len(tt.lines)-1] {
				rc.expect(l, "334 ")
			}
			rc.expect(tt.lines[len(tt.lines)-1], "501 5.5.2")
			// The session goes on, and alice was not counted a failure.
			rc.expect(authPlain(user, alicePassword), "235 2.0.0")
		})
	}
	if !strings.Contains(e.logs.String(), `reason="malformed PLAIN response"`) {
		t.Errorf("malformed PLAIN response not logged:\n%s", e.logs)
	}
}
