package srs

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// day311 is a time whose day number modulo 1024 is 311, "JX": the day on
// which the known answers below were made with Mail::SRS.
var day311 = time.Date(2026, 12, 4, 8, 40, 0, 0, time.UTC)

func newRewriter(t testing.TB, domain string, now *time.Time, secrets ...string) *Rewriter {
	t.Helper()
	cfg := Config{Domain: domain, Now: func() time.Time { return *now }}
	for _, s := range secrets {
		cfg.Secrets = append(cfg.Secrets, []byte(s))
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestKnownAnswers pins the format to Mail::SRS 0.31's output
// (srs --secret=abc --alias=fwd.example --forward user@orig.example,
// then that address forwarded again with --alias=fwd2.example), so that
// the box's addresses stay readable by libsrs2, postsrsd and Mail::SRS
// even where no reference implementation is installed.
func TestKnownAnswers(t *testing.T) {
	now := day311
	r1 := newRewriter(t, "fwd.example", &now, "abc")
	r2 := newRewriter(t, "fwd2.example", &now, "abc")
	srs0, err := r1.Forward("user@orig.example")
	if want := "SRS0=xRfu=JX=orig.example=user@fwd.example"; err != nil || srs0 != want {
		t.Fatalf("Forward = %q, %v; want %q", srs0, err, want)
	}
	srs1, err := r2.Forward(srs0)
	if want := "SRS1=4DxU=fwd.example==xRfu=JX=orig.example=user@fwd2.example"; err != nil || srs1 != want {
		t.Fatalf("Forward(SRS0) = %q, %v; want %q", srs1, err, want)
	}
}

func TestRoundTrip(t *testing.T) {
	now := day311
	r := newRewriter(t, "fwd.example", &now, "a secret")
	for _, sender := range []string{
		"user@orig.example",
		"User.Name@Orig.Example", // case kept
		"first.last+tag@orig.example",
		"a=b==c@orig.example", // '=' in the local part: the last field takes the rest
		"a+b-c_d/e@sub.orig.example",
		"x@[192.0.2.1]",
		"x@[IPv6:2001:db8::1]",
		"ünïcödé@orig.example", // RFC 6531 local part, bytes as they are
		"用户@例子.测试",
		"user@xn--bcher-kva.example",
		"srs0@orig.example",                  // a tag without a separator is a plain local part
		"SRS1=abc@orig.example",              // looks like SRS1, is not: wrapped as SRS0
		"SRS1=abcd=host=notsep@orig.example", // idem, the SRS0 part does not start with a separator
	} {
		t.Run(sender, func(t *testing.T) {
			fwd, err := r.Forward(sender)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(fwd, "SRS0=") || !strings.HasSuffix(fwd, "@fwd.example") {
				t.Fatalf("Forward = %q, want SRS0=...@fwd.example", fwd)
			}
			got, err := r.Reverse(fwd)
			if err != nil || got != sender {
				t.Fatalf("Reverse(%q) = %q, %v; want %q", fwd, got, err, sender)
			}
		})
	}
}

func TestForwardUnchanged(t *testing.T) {
	now := day311
	r := newRewriter(t, "fwd.example", &now, "s")
	for in, want := range map[string]string{
		"":                   "",
		"<>":                 "",
		"user@fwd.example":   "user@fwd.example",
		"User@FWD.Example":   "User@FWD.Example",
		"SRS0=x@fwd.example": "SRS0=x@fwd.example",
	} {
		if got, err := r.Forward(in); err != nil || got != want {
			t.Errorf("Forward(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestForwardRefuses(t *testing.T) {
	now := day311
	r := newRewriter(t, "fwd.example", &now, "s")
	for _, in := range []string{
		"nodomain", "@orig.example", "user@", `"a b"@orig.example`, `"a@b"@orig.example`,
		"a b@orig.example", "user@orig=example", "<user@orig.example>", "us\ter@orig.example",
		"user@orig.example\r\n",
	} {
		if got, err := r.Forward(in); err == nil {
			t.Errorf("Forward(%q) = %q, want an error", in, got)
		}
	}
}

func TestChains(t *testing.T) {
	now := day311
	r1 := newRewriter(t, "fwd1.example", &now, "one")
	r2 := newRewriter(t, "fwd2.example", &now, "two")
	r3 := newRewriter(t, "fwd3.example", &now, "three")
	const sender = "user+x@orig.example"
	a, err := r1.Forward(sender)
	if err != nil {
		t.Fatal(err)
	}
	b, err := r2.Forward(a)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(b, "SRS1=") || !strings.Contains(b, "=fwd1.example==") || !strings.HasSuffix(b, "@fwd2.example") {
		t.Fatalf("SRS0 forwarded again = %q, want SRS1=HHHH=fwd1.example==...@fwd2.example", b)
	}
	// A third forwarder keeps the first one: its bounce goes straight there.
	c, err := r3.Forward(b)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(c, "SRS1=") || !strings.Contains(c, "=fwd1.example==") || !strings.HasSuffix(c, "@fwd3.example") {
		t.Fatalf("SRS1 forwarded again = %q", c)
	}
	for _, step := range []struct {
		r        *Rewriter
		in, want string
	}{
		{r3, c, a}, {r2, b, a}, {r1, a, sender},
	} {
		if got, err := step.r.Reverse(step.in); err != nil || got != step.want {
			t.Errorf("Reverse(%q) = %q, %v; want %q", step.in, got, err, step.want)
		}
	}
	// Another forwarder's SRS1 hash is not ours.
	if _, err := r3.Reverse(strings.Replace(b, "@fwd2.example", "@fwd3.example", 1)); !errors.Is(err, ErrBadHash) {
		t.Errorf("r3 reversing r2's SRS1: %v, want ErrBadHash", err)
	}
	// The separator of a foreign SRS0 ('+' or '-') comes back as it was.
	for _, in := range []string{"SRS0+HHHH=TT=orig.example=u@elsewhere.example", "srs0-HHHH=TT=orig.example=u@elsewhere.example"} {
		out, err := r2.Forward(in)
		if err != nil {
			t.Fatal(err)
		}
		want := "SRS0" + in[4:]
		if got, err := r2.Reverse(out); err != nil || got != want {
			t.Errorf("Reverse(Forward(%q)) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestReverseRefuses(t *testing.T) {
	now := day311
	r := newRewriter(t, "fwd.example", &now, "abc")
	good := "SRS0=xRfu=JX=orig.example=user@fwd.example" // TestKnownAnswers
	if _, err := r.Reverse(good); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		addr string
		want error
	}{
		{"user@fwd.example", ErrNotSRS},
		{"nobody", ErrNotSRS},
		{"", ErrNotSRS},
		{"SRS2=xRfu=JX=orig.example=user@fwd.example", ErrNotSRS},
		{"SRS0xRfu=JX=orig.example=user@fwd.example", ErrNotSRS},
		{"SRS0=xRfu=JX=orig.example=user@other.example", ErrForeignDomain},
		{"SRS0=xRfu=JX=orig.example=user@fwd.example.evil", ErrForeignDomain},
		{"SRS0=xRfv=JX=orig.example=user@fwd.example", ErrBadHash},
		{"SRS0=xRfu=JX=orig.example=usex@fwd.example", ErrBadHash},
		{"SRS0=xRfu=JX=evil.example=user@fwd.example", ErrBadHash},
		{"SRS0=xRfu=JW=orig.example=user@fwd.example", ErrBadHash}, // the timestamp is signed too
		{"SRS0=xRf=JX=orig.example=user@fwd.example", ErrMalformed},
		{"SRS0=xRfuu=JX=orig.example=user@fwd.example", ErrMalformed},
		{"SRS0=xRfu=J1=orig.example=user@fwd.example", ErrMalformed},
		{"SRS0=xRfu=JXX=orig.example=user@fwd.example", ErrMalformed},
		{"SRS0=xRfu=JX=orig.example@fwd.example", ErrMalformed},
		{"SRS0=xRfu=JX==user@fwd.example", ErrMalformed},
		{"SRS0=xRfu=JX=orig.example=@fwd.example", ErrMalformed},
		{"SRS0=@fwd.example", ErrMalformed},
		{"SRS1=4DxU=fwd.example@fwd.example", ErrMalformed},
		{"SRS1=4DxU==xRfu=JX=orig.example=user@fwd.example", ErrMalformed},
		{"SRS1=4DxU=fwd.example=xRfu@fwd.example", ErrMalformed},
		{"SRS1=4DxV=fwd.example==xRfu=JX=orig.example=user@fwd.example", ErrBadHash},
		{"SRS1=4DxU=fwd.example==xRfu=JX=orig.example=usex@fwd.example", ErrBadHash},
	} {
		if got, err := r.Reverse(c.addr); !errors.Is(err, c.want) {
			t.Errorf("Reverse(%q) = %q, %v; want %v", c.addr, got, err, c.want)
		}
	}
}

func TestCaseFolded(t *testing.T) {
	now := day311
	r := newRewriter(t, "fwd.example", &now, "abc")
	other := newRewriter(t, "fwd.example", &now, "not abc")
	for _, sender := range []string{"user@orig.example", "User.Name+Tag@Orig.Example", "a=B@orig.example"} {
		fwd, err := r.Forward(sender)
		if err != nil {
			t.Fatal(err)
		}
		for _, folded := range []string{asciiLower(fwd), strings.ToUpper(fwd)} {
			if folded == fwd {
				continue
			}
			got, err := r.Reverse(folded)
			if err != nil || !strings.EqualFold(got, sender) {
				t.Errorf("Reverse(%q) = %q, %v; want %q in any case", folded, got, err, sender)
			}
			if _, err := other.Reverse(folded); !errors.Is(err, ErrBadHash) {
				t.Errorf("another secret reversing %q: %v, want ErrBadHash", folded, err)
			}
		}
		// SRS1 too.
		srs1, err := r.Forward("SRS0=HHHH=TT=orig.example=" + sender[:strings.IndexByte(sender, '@')] + "@fwd0.example")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.Reverse(asciiLower(srs1)); err != nil {
			t.Errorf("Reverse(%q): %v", asciiLower(srs1), err)
		}
	}
}

func TestExpiry(t *testing.T) {
	start := day311
	now := start
	def := newRewriter(t, "fwd.example", &now, "s")
	short, err := New(Config{Secrets: [][]byte{[]byte("s")}, Domain: "fwd.example", MaxAge: 2 * day, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	fwd, err := def.Forward("user@orig.example")
	if err != nil {
		t.Fatal(err)
	}
	// The timestamp wraps every 1024 days: 1030 days later is 6 days old.
	for _, c := range []struct {
		after          time.Duration
		defOK, shortOK bool
	}{
		{0, true, true},
		{2 * day, true, true},
		{3 * day, true, false},
		{21 * day, true, false},
		{22 * day, false, false},
		{-day, false, false}, // from the future: a whole cycle old
		{1030 * day, true, false},
	} {
		now = start.Add(c.after)
		_, err := def.Reverse(fwd)
		if (err == nil) != c.defOK || err != nil && !errors.Is(err, ErrExpired) {
			t.Errorf("default max age, %v later: %v", c.after, err)
		}
		_, err = short.Reverse(fwd)
		if (err == nil) != c.shortOK || err != nil && !errors.Is(err, ErrExpired) {
			t.Errorf("2-day max age, %v later: %v", c.after, err)
		}
	}
	// An expired but forged address is reported as forged.
	now = start.Add(100 * day)
	if _, err := def.Reverse(strings.Replace(fwd, "=orig.", "=orig2.", 1)); !errors.Is(err, ErrBadHash) {
		t.Errorf("forged and expired: %v, want ErrBadHash", err)
	}
}

func TestKeyRotation(t *testing.T) {
	now := day311
	old := newRewriter(t, "fwd.example", &now, "old secret")
	rotated := newRewriter(t, "fwd.example", &now, "new secret", "old secret")
	newOnly := newRewriter(t, "fwd.example", &now, "new secret")
	const sender = "user@orig.example"
	byOld, _ := old.Forward(sender)
	byRotated, _ := rotated.Forward(sender)
	if byOld == byRotated {
		t.Fatalf("the rotated rewriter signs with the old secret: %q", byRotated)
	}
	if got, err := rotated.Reverse(byOld); err != nil || got != sender {
		t.Errorf("old secret's address after rotation: %q, %v", got, err)
	}
	if got, err := newOnly.Reverse(byRotated); err != nil || got != sender {
		t.Errorf("the rotated rewriter does not sign with its first secret: %q, %v", got, err)
	}
	if _, err := old.Reverse(byRotated); !errors.Is(err, ErrBadHash) {
		t.Errorf("old secret alone verifies the new one's address: %v", err)
	}
	if _, err := newOnly.Reverse(byOld); !errors.Is(err, ErrBadHash) {
		t.Errorf("the old secret dropped still verifies: %v", err)
	}
}

func TestNewRefuses(t *testing.T) {
	s := [][]byte{[]byte("s")}
	for name, cfg := range map[string]Config{
		"no secret":    {Domain: "fwd.example"},
		"empty secret": {Secrets: [][]byte{[]byte("s"), nil}, Domain: "fwd.example"},
		"no domain":    {Secrets: s},
		"bad domain":   {Secrets: s, Domain: "a=b.example"},
		"half a day":   {Secrets: s, Domain: "fwd.example", MaxAge: 12 * time.Hour},
		"a cycle":      {Secrets: s, Domain: "fwd.example", MaxAge: 1024 * day},
		"negative":     {Secrets: s, Domain: "fwd.example", MaxAge: -day},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
	// The secrets are copied: the caller's slice may be reused.
	key := []byte("abc")
	now := day311
	r, err := New(Config{Secrets: [][]byte{key}, Domain: "fwd.example", Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	key[0] = 'x'
	if got, _ := r.Forward("user@orig.example"); got != "SRS0=xRfu=JX=orig.example=user@fwd.example" {
		t.Errorf("secret not copied: %q", got)
	}
}
