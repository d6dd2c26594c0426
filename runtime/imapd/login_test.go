package imapd

import (
	"context"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"mailfountain.dev/mailfountain/runtime/auth"
	"mailfountain.dev/mailfountain/runtime/store"
)

// TestLoginTiming checks that LOGIN for a name that does not exist, or for
// an account without a password, takes as long as a wrong password for an
// account whose hash is the argon2id HashPassword makes: the time of the
// answer does not tell which names exist. Medians over several tries and a
// generous bound keep it steady under load; before the dummy hash, the
// ratio was about 0.01.
func TestLoginTiming(t *testing.T) {
	e := newEnv(t)
	e.limits.MaxLoginFailures = 100
	ctx := context.Background()
	hash, err := auth.HashPassword(testPassword)
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.st.UpdateDirectory(ctx, func(tx *store.DirectoryTx) error {
		return tx.PutAccount(ctx, store.Account{Domain: testDomain, ID: "rene", Name: "rene", PasswordHash: hash})
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.st.UpdateDirectory(ctx, func(tx *store.DirectoryTx) error {
		return tx.PutAccount(ctx, store.Account{Domain: testDomain, ID: "julie", Name: "julie"}) // no password
	})
	if err != nil {
		t.Fatal(err)
	}
	e.start()
	kinds := []struct{ name, user string }{
		{"wrong password", testUser},
		{"unknown name", "nobody@" + testDomain},
		{"no password", otherUser},
	}
	const tries = 5
	took := make([][]time.Duration, len(kinds))
	r := dialRaw(t, e.tlsAddr, true)
	for range tries {
		for i, k := range kinds {
			start := time.Now()
			if _, st := r.cmd("LOGIN %s not-the-password", k.user); !strings.HasPrefix(st, "NO [AUTHENTICATIONFAILED]") {
				t.Fatalf("LOGIN %s: %q", k.user, st)
			}
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

// TestAuthenticateMalformed checks that a malformed AUTHENTICATE PLAIN
// response is a client error (BAD), counted as no failed login.
func TestAuthenticateMalformed(t *testing.T) {
	e := newEnv(t)
	// One failure would lock rene out: the malformed ones must not count.
	e.auth = auth.NewAuthenticatorLimits(e.st, nil, auth.Limits{AccountFailures: 1, FailureEvery: time.Hour})
	e.start()
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	tests := []struct {
		name     string
		initial  string // the initial response, if any
		response string // else the response to the continuation
	}{
		{"empty", "=", ""},
		{"no NUL", b64(testUser + testPassword), ""},
		{"one NUL", b64(testUser + "\x00" + testPassword), ""},
		{"extra NUL", b64("\x00" + testUser + "\x00" + testPassword + "\x00"), ""},
		{"empty user", b64("\x00\x00" + testPassword), ""},
		{"empty password", b64("\x00" + testUser + "\x00"), ""},
		{"continuation, extra NULs", "", b64("\x00\x00" + testUser + "\x00" + testPassword)},
		{"continuation, empty", "", "="},
		{"continuation, not base64", "", "!!!"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := dialRaw(t, e.tlsAddr, true)
			var st string
			if tt.initial != "" {
				_, st = r.cmd("AUTHENTICATE PLAIN %s", tt.initial)
			} else {
				if _, err := fmt.Fprintf(r.conn, "x1 AUTHENTICATE PLAIN\r\n"); err != nil {
					t.Fatal(err)
				}
				if l := r.line(); !strings.HasPrefix(l, "+") {
					t.Fatalf("AUTHENTICATE PLAIN: %q, want a continuation", l)
				}
				if _, err := fmt.Fprintf(r.conn, "%s\r\n", tt.response); err != nil {
					t.Fatal(err)
				}
				st = strings.TrimPrefix(r.line(), "x1 ")
			}
			if !strings.HasPrefix(st, "BAD") {
				t.Errorf("got %q, want BAD", st)
			}
			if _, st := r.cmd("AUTHENTICATE PLAIN %s", b64("\x00"+testUser+"\x00"+testPassword)); !strings.HasPrefix(st, "OK") {
				t.Errorf("a well-formed AUTHENTICATE after it: %q", st)
			}
		})
	}
}
