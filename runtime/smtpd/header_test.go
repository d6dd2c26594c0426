package smtpd

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"mailfountain.dev/mailfountain/runtime/mailauth"
)

func TestForgedAuthResults(t *testing.T) {
	t.Parallel()
	const id = "mx.example.test"
	for _, c := range []struct {
		name string
		hdr  string
		want []string // the fields dropped
	}{
		{"none", "Subject: x\r\nFrom: a@b\r\n\r\n", nil},
		{"ours", "Authentication-Results: mx.example.test; spf=pass\r\nSubject: x\r\n\r\n",
			[]string{"Authentication-Results: mx.example.test; spf=pass\r\n"}},
		{"theirs", "Authentication-Results: mx.other.test; spf=pass\r\n\r\n", nil},
		{"prefix of ours", "Authentication-Results: mx.example.test.evil; spf=pass\r\n\r\n", nil},
		{"ours as prefix", "Authentication-Results: example.test; spf=pass\r\n\r\n", nil},
		{"no space", "Authentication-Results:mx.example.test;spf=pass\r\n\r\n",
			[]string{"Authentication-Results:mx.example.test;spf=pass\r\n"}},
		{"case, comment, quoted, folded", "X: 1\r\nauthentication-RESULTS \t: (a (nested) comment)\r\n \"MX.Example.Test\" 1;\r\n\tdkim=pass\r\nY: 2\r\n\r\n",
			[]string{"authentication-RESULTS \t: (a (nested) comment)\r\n \"MX.Example.Test\" 1;\r\n\tdkim=pass\r\n"}},
		{"bare LF", "Authentication-Results: mx.example.test; none\n folded\nSubject: x\n\n",
			[]string{"Authentication-Results: mx.example.test; none\n folded\n"}},
		{"two of ours", "Authentication-Results: mx.example.test; a\r\nAuthentication-Results: mx.example.test; b\r\n\r\n",
			[]string{"Authentication-Results: mx.example.test; a\r\n", "Authentication-Results: mx.example.test; b\r\n"}},
		{"other field", "Authentication-Results-X: mx.example.test; a\r\nARC-Authentication-Results: i=1; mx.example.test; a\r\n\r\n", nil},
		{"whole at the end", "Authentication-Results: mx.example.test; a\r\n",
			[]string{"Authentication-Results: mx.example.test; a\r\n"}},
		{"final dot", "Authentication-Results: MX.Example.Test.; spf=pass\r\n\r\n",
			[]string{"Authentication-Results: MX.Example.Test.; spf=pass\r\n"}},
		{"first line indented", " Authentication-Results: mx.example.test; a\r\nSubject: x\r\n\r\n",
			[]string{" Authentication-Results: mx.example.test; a\r\n"}},
		{"no id", "Authentication-Results: ; spf=pass\r\n\r\n", nil},
		{"unterminated quote", "Authentication-Results: \"mx.example.test\r\n\r\n", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			hdr := []byte(c.hdr)
			var got []string
			for _, r := range forgedAuthResults(hdr, id) {
				got = append(got, string(hdr[r[0]:r[1]]))
			}
			if strings.Join(got, "|") != strings.Join(c.want, "|") {
				t.Fatalf("dropped %q, want %q", got, c.want)
			}
		})
	}
}

func TestHeaderEnd(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		msg   string
		end   int
		found bool
	}{
		{"A: 1\r\n\r\nbody", 8, true},
		{"A: 1\n\nbody", 6, true},
		{"\r\nbody", 2, true},
		{"A: 1\r\nB: 2\r\n", 12, false},
		{"A: 1", 4, false},
		{"", 0, false},
	} {
		end, found := headerEnd([]byte(c.msg))
		if end != c.end || found != c.found {
			t.Errorf("headerEnd(%q) = %d, %v; want %d, %v", c.msg, end, found, c.end, c.found)
		}
	}
}

func TestReceivedField(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.FixedZone("", 3600))
	for _, c := range []struct {
		r    received
		want string
	}{
		{received{helo: "mail.remote.test", name: "mail.remote.test", ip: netip.MustParseAddr("192.0.2.1"), by: "mx.example.test", proto: "ESMTPS", id: "a.1", rcpt: "alice@example.test", at: at},
			"Received: from mail.remote.test (mail.remote.test [192.0.2.1])\r\n\tby mx.example.test (MailFountain) with ESMTPS id a.1\r\n\tfor <alice@example.test>; Wed, 04 Mar 2026 05:06:07 +0100\r\n"},
		{received{helo: "[IPv6:2001:db8::1]", name: "unknown", ip: netip.MustParseAddr("2001:db8::1"), by: "mx.example.test.", proto: "ESMTPSA", id: "a.2", at: at},
			"Received: from [IPv6:2001:db8::1] (unknown [IPv6:2001:db8::1])\r\n\tby mx.example.test (MailFountain) with ESMTPSA id a.2;\r\n\tWed, 04 Mar 2026 05:06:07 +0100\r\n"},
		{received{helo: "evil;(x)\"é", name: "unknown", ip: netip.MustParseAddr("192.0.2.1"), by: "bad host", proto: "ESMTP", id: "a.3", rcpt: "a b@c", at: at},
			"Received: from evil??x??? (unknown [192.0.2.1])\r\n\tby localhost (MailFountain) with ESMTP id a.3;\r\n\tWed, 04 Mar 2026 05:06:07 +0100\r\n"},
	} {
		if got := string(appendReceived(nil, c.r)); got != c.want {
			t.Errorf("got\n%q\nwant\n%q", got, c.want)
		}
	}
}

// formatPath is appendPath to a new string.
func formatPath(addr string) string {
	return string(appendPath(nil, addr))
}

func TestFormatPath(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"":                      "",
		"alice@example.test":    "alice@example.test",
		"a.b+c@example.test":    "a.b+c@example.test",
		"john doe@example.test": `"john doe"@example.test`,
		`a"b\c@x.test`:          `"a\"b\\c"@x.test`,
		"a..b@x.test":           `"a..b"@x.test`,
		".a@x.test":             `".a"@x.test`,
		"a\x01b@x.test":         `"a?b"@x.test`,
		"a@b@x.test":            `"a@b"@x.test`,
		"a@x<y>.test":           "a@x?y?.test",
		"noat":                  "noat",
		"josé@exemple.test":     "josé@exemple.test",
	} {
		if got := formatPath(in); got != want {
			t.Errorf("formatPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSplitAddress(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ in, local, domain string }{
		{"Alice@Example.TEST", "alice", "example.test"},
		{"alice@example.test.", "alice", "example.test"},
		{"a@b@example.test", "a@b", "example.test"},
		{"@example.test", "", ""},
		{"alice@", "", ""},
		{"alice@.", "", ""},
		{"alice", "", ""},
		{strings.Repeat("a", 65) + "@example.test", "", ""},
	} {
		local, domain, ok := splitAddress(c.in)
		if local != c.local || domain != c.domain || ok != (c.local != "") {
			t.Errorf("splitAddress(%q) = %q, %q, %v", c.in, local, domain, ok)
		}
	}
}

// recordingVerifier and recordingDeliverer see what the server hands
// them, for the one path no loopback client can reach.
type recordingVerifier struct {
	mu                        sync.Mutex
	calls                     int
	remote                    netip.Addr
	helo, from, authserv, msg string
}

func (v *recordingVerifier) Verify(ctx context.Context, in mailauth.Input, msg io.Reader) string {
	b, _ := io.ReadAll(msg)
	v.mu.Lock()
	defer v.mu.Unlock()
	v.calls++
	v.remote, v.helo, v.from, v.authserv, v.msg = in.RemoteIP, in.HELO, in.MailFrom, in.AuthservID, string(b)
	return "Authentication-Results: " + in.AuthservID + "; spf=pass smtp.mailfrom=remote.test"
}

type recordingDeliverer struct {
	mu       sync.Mutex
	roots    []string
	key, msg string
}

func (d *recordingDeliverer) DeliverOnce(ctx context.Context, roots []string, key string, msg io.Reader) (bool, error) {
	b, err := io.ReadAll(msg)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.roots, d.key, d.msg = roots, key, string(b)
	return false, err
}

// last returns what the last delivery got.
func (d *recordingDeliverer) last() (key, msg string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.key, d.msg
}

type fakeResolver map[string][]string

func (r fakeResolver) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	if names, ok := r[addr]; ok {
		return names, nil
	}
	return nil, errors.New("no PTR")
}

func TestDeliverFromTheInternet(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		remote, name string
	}{
		{"192.0.2.1", "mail.remote.test"},
		{"192.0.2.2", "unknown"}, // no PTR
		{"192.0.2.3", "unknown"}, // a PTR that is no host name
	} {
		v := &recordingVerifier{}
		d := &recordingDeliverer{}
		s, err := New(Config{Directory: nilDirectory{}, Deliverer: d, Verifier: v,
			Resolver: fakeResolver{"192.0.2.1": {"mail.remote.test."}, "192.0.2.3": {"bad name(x)."}}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cn := &conn{s: s, kind: kindMX, remote: netip.MustParseAddr(c.remote), ctx: ctx, cancel: cancel, rdnsDone: make(chan struct{})}
		cn.settings.Hostname = testHost
		go cn.lookupName()
		sess := &session{c: cn, tls: true}
		orig := "Authentication-Results: " + testHost + "; dkim=pass (forged)\r\nSubject: hi\r\n\r\nbody\r\n"
		msg, err := s.spool.read(strings.NewReader(orig), nil)
		if err != nil {
			t.Fatal(err)
		}
		tx := &transaction{from: "x@remote.test", helo: "mail.remote.test", rcpts: []string{"alice@example.test"}, roots: []string{"/r/alice"}}
		if dup, _, err := sess.deliver(tx, msg, "id.1", "0123456789abcdef0123456789abcdef"); err != nil || dup {
			t.Fatal(dup, err)
		}
		msg.release()
		cancel()
		if v.calls != 1 || v.remote != cn.remote || v.helo != "mail.remote.test" || v.from != "x@remote.test" || v.authserv != testHost || v.msg != orig {
			t.Errorf("verifier saw %+v", v)
		}
		want := "Return-Path: <x@remote.test>\r\n" +
			"Authentication-Results: " + testHost + "; spf=pass smtp.mailfrom=remote.test\r\n" +
			"Received: from mail.remote.test (" + c.name + " [" + c.remote + "])\r\n\tby " + testHost + " (MailFountain) with ESMTPS id id.1\r\n\tfor <alice@example.test>; "
		if d.key != "0123456789abcdef0123456789abcdef" {
			t.Errorf("deliverer got key %q", d.key)
		}
		if !strings.HasPrefix(d.msg, want) || !strings.HasSuffix(d.msg, "\r\nSubject: hi\r\n\r\nbody\r\n") || strings.Contains(d.msg, "forged") {
			t.Errorf("delivered\n%s\nwant it to start with\n%s", d.msg, want)
		}
	}
}

// A loopback client (the box itself) gets no Authentication-Results.
func TestVerifierSkipsLoopback(t *testing.T) {
	t.Parallel()
	v := &recordingVerifier{}
	e := newEnv(t, func(c *Config) { c.Verifier = v })
	if err := send(e.client(e.mx, plain), "x@remote.test", []string{"alice@example.test"}, testMessage("v")); err != nil {
		t.Fatal(err)
	}
	msg := e.wantMailbox("example.test", "alice", 1)[0]
	if v.calls != 0 || strings.Contains(msg, "Authentication-Results") {
		t.Fatalf("verifier called %d times for a loopback client:\n%s", v.calls, msg)
	}
}

func TestSpool(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := &spoolPool{limit: 1000, dir: dir}
	for _, n := range []int{0, 10, 999, 1000, 1001, 5000, 70000} {
		in := bytes.Repeat([]byte("0123456789abcdef"), n/16+1)[:n]
		if n > 0 {
			in[n/3] = 'x' // the digest must cover every byte, in order
		}
		sum := sha256.New()
		m, err := p.read(io.MultiReader(bytes.NewReader(in[:n/2]), bytes.NewReader(in[n/2:])), sum)
		if err != nil {
			t.Fatal(err)
		}
		out, err := io.ReadAll(m.reader(nil, nil))
		if err != nil || !bytes.Equal(out, in) || m.size != int64(n) {
			t.Fatalf("%d bytes: read back %d bytes (size %d), %v", n, len(out), m.size, err)
		}
		if want := sha256.Sum256(in); !bytes.Equal(sum.Sum(nil), want[:]) {
			t.Fatalf("%d bytes: the digest taken while reading is not that of the message", n)
		}
		m.release()
	}
	failing := errors.New("broken")
	if _, err := p.read(io.MultiReader(bytes.NewReader(make([]byte, 3000)), iotestErr{failing}), nil); !errors.Is(err, failing) {
		t.Fatalf("read error %v, want %v", err, failing)
	}
	bad := &spoolPool{limit: 10, dir: filepath.Join(dir, "missing")}
	if _, err := bad.read(bytes.NewReader(make([]byte, 100)), nil); !errors.Is(err, errSpool) {
		t.Fatalf("spool into a missing directory: %v, want errSpool", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("spool files left: %v", ents)
	}
}

type iotestErr struct{ err error }

func (r iotestErr) Read([]byte) (int, error) { return 0, r.err }
