package mailauth

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestResolver(t *testing.T) {
	z := startDNS(t,
		`txt.test. TXT "one" "two"`,
		`txt.test. TXT "second record"`,
		`esc.test. TXT "a\"b\\c\255d"`,
		`host.test. A 192.0.2.1`,
		`host.test. A 192.0.2.2`,
		`host.test. AAAA 2001:db8::1`,
		`alias.test. CNAME host.test.`,
		`mx.test. MX 20 b.mx.test.`,
		`mx.test. MX 10 a.mx.test.`,
		`mx.test. MX 30 c.mx.test.`,
		`1.2.0.192.in-addr.arpa. PTR host.test.`,
		`big.test. TXT "truncated over UDP"`,
		`deep.sub.test. A 192.0.2.9`,
	)
	z.servfail("broken.test")
	z.set(z.drop, "silent.test")
	z.set(z.truncate, "big.test")
	r := NewResolver([]string{z.Addr}, 2*time.Second)
	quick := NewResolver([]string{z.Addr}, 250*time.Millisecond) // for silent servers
	ctx := t.Context()

	t.Run("TXT joins strings and keeps records apart", func(t *testing.T) {
		got, err := r.LookupTXT(ctx, "txt.test")
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(got)
		if want := []string{"onetwo", "second record"}; !slices.Equal(got, want) {
			t.Fatalf("got %q, want %q", got, want)
		}
	})
	t.Run("TXT escapes are undone", func(t *testing.T) {
		got, err := r.LookupTXT(ctx, "esc.test.")
		if err != nil {
			t.Fatal(err)
		}
		if want := "a\"b\\c\xffd"; len(got) != 1 || got[0] != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	})
	t.Run("A and AAAA", func(t *testing.T) {
		v4, err := r.LookupIP(ctx, "ip4", "host.test")
		if err != nil {
			t.Fatal(err)
		}
		if len(v4) != 2 || !v4[0].Is4() || !v4[1].Is4() {
			t.Fatalf("A: %v", v4)
		}
		v6, err := r.LookupIP(ctx, "ip6", "host.test")
		if err != nil || len(v6) != 1 || v6[0] != netip.MustParseAddr("2001:db8::1") {
			t.Fatalf("AAAA: %v %v", v6, err)
		}
	})
	t.Run("CNAME is followed", func(t *testing.T) {
		got, err := r.LookupIP(ctx, "ip4", "alias.test")
		if err != nil || len(got) != 2 {
			t.Fatalf("got %v %v", got, err)
		}
	})
	t.Run("MX sorted by preference", func(t *testing.T) {
		got, err := r.LookupMX(ctx, "mx.test")
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"a.mx.test", "b.mx.test", "c.mx.test"}; !slices.Equal(got, want) {
			t.Fatalf("got %q, want %q", got, want)
		}
	})
	t.Run("PTR", func(t *testing.T) {
		got, err := r.LookupPTR(ctx, netip.MustParseAddr("::ffff:192.0.2.1"))
		if err != nil || !slices.Equal(got, []string{"host.test"}) {
			t.Fatalf("got %q %v", got, err)
		}
	})
	t.Run("truncated UDP answer retried over TCP", func(t *testing.T) {
		before := z.TCPQueries()
		got, err := r.LookupTXT(ctx, "big.test")
		if err != nil || len(got) != 1 || got[0] != "truncated over UDP" {
			t.Fatalf("got %q %v", got, err)
		}
		if z.TCPQueries() == before {
			t.Fatal("no TCP query")
		}
	})

	notFound := []struct{ name, network string }{
		{"nowhere.test", "ip4"},   // NXDOMAIN
		{"txt.test", "ip4"},       // NODATA
		{"sub.test", "ip4"},       // empty non-terminal: NODATA
		{"bad..name.test", "ip4"}, // cannot be asked
		{strings.Repeat("a", 64) + ".test", "ip4"},
	}
	for _, c := range notFound {
		t.Run("not found "+c.name, func(t *testing.T) {
			_, err := r.LookupIP(ctx, c.network, c.name)
			if !errors.Is(err, ErrNotFound) {
				t.Fatalf("got %v, want ErrNotFound", err)
			}
			var ne net.Error
			if !errors.As(err, &ne) || ne.Temporary() { //nolint:staticcheck // go-msgauth reads Temporary
				t.Fatalf("%v: a missing record must not be temporary", err)
			}
		})
	}

	temporary := []string{"broken.test", "silent.test"}
	for _, name := range temporary {
		t.Run("temporary "+name, func(t *testing.T) {
			start := time.Now()
			_, err := quick.LookupTXT(ctx, name)
			var de *DNSError
			if !errors.As(err, &de) || !de.Temporary() || errors.Is(err, ErrNotFound) {
				t.Fatalf("got %v, want a temporary error", err)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Fatalf("took %v", d)
			}
		})
	}
	t.Run("timeout reported", func(t *testing.T) {
		_, err := quick.LookupTXT(ctx, "silent.test")
		var de *DNSError
		if !errors.As(err, &de) || !de.Timeout() {
			t.Fatalf("got %v, want a timeout", err)
		}
	})

	t.Run("lost datagram asked again", func(t *testing.T) {
		z.Add(`lossy.test. TXT "second time"`)
		z.mu.Lock()
		z.lose["lossy.test."] = 1
		z.mu.Unlock()
		before := z.Queries()
		got, err := quick.LookupTXT(ctx, "lossy.test")
		if err != nil || len(got) != 1 || got[0] != "second time" {
			t.Fatalf("got %q %v", got, err)
		}
		if n := z.Queries() - before; n != 2 {
			t.Fatalf("%d queries, want 2", n)
		}
	})
	t.Run("next server after SERVFAIL or silence", func(t *testing.T) {
		good := startDNS(t, `broken.test. TXT "fine"`, `silent.test. TXT "fine"`)
		r2 := NewResolver([]string{z.Addr, good.Addr}, 500*time.Millisecond)
		for _, name := range temporary {
			got, err := r2.LookupTXT(ctx, name)
			if err != nil || len(got) != 1 || got[0] != "fine" {
				t.Fatalf("%s: got %q %v", name, got, err)
			}
		}
	})
	t.Run("NXDOMAIN is final", func(t *testing.T) {
		other := startDNS(t, `nowhere.test. TXT "elsewhere"`)
		r2 := NewResolver([]string{z.Addr, other.Addr}, 2*time.Second)
		if _, err := r2.LookupTXT(ctx, "nowhere.test"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("cancelled context stops a query at once", func(t *testing.T) {
		slow := NewResolver([]string{z.Addr}, 10*time.Second)
		cctx, cancel := context.WithCancel(ctx)
		time.AfterFunc(100*time.Millisecond, cancel)
		start := time.Now()
		_, err := slow.LookupTXT(cctx, "silent.test")
		if err == nil || errors.Is(err, ErrNotFound) {
			t.Fatalf("got %v", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("took %v", d)
		}
	})
}

func TestSystemServers(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(conf, []byte("# test\nnameserver 192.0.2.53\nnameserver 2001:db8::53\nsearch example.org\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got := systemServers(conf)
	if want := []string{"192.0.2.53:53", "[2001:db8::53]:53"}; !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	if got := systemServers(filepath.Join(dir, "missing")); !slices.Equal(got, []string{"127.0.0.1:53"}) {
		t.Fatalf("missing file: got %q", got)
	}
}

func TestUnescapeTXT(t *testing.T) {
	for in, want := range map[string]string{
		`plain`:     "plain",
		`a\"b`:      `a"b`,
		`a\\b`:      `a\b`,
		`\000\255`:  "\x00\xff",
		`\999`:      "999",
		`trailing\`: `trailing\`,
		`\12`:       "12",
		`x\;y`:      "x;y",
	} {
		if got := unescapeTXT(in); got != want {
			t.Errorf("unescapeTXT(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestLookupMXRecords: mail delivery tells a null MX, NODATA, NXDOMAIN
// and a failure apart.
func TestLookupMXRecords(t *testing.T) {
	z := startDNS(t,
		`mx.test. MX 20 b.mx.test.`,
		`mx.test. MX 10 a.mx.test.`,
		`mx.test. MX 20 c.mx.test.`,
		`null.test. MX 0 .`,
		`nomx.test. A 192.0.2.1`,
	)
	z.servfail("broken.test")
	r := NewResolver([]string{z.Addr}, 500*time.Millisecond)
	ctx := t.Context()

	got, err := r.LookupMXRecords(ctx, "mx.test")
	if want := []MX{{"a.mx.test", 10}, {"b.mx.test", 20}, {"c.mx.test", 20}}; err != nil || !slices.Equal(got, want) {
		t.Fatalf("mx.test: got %v %v, want %v", got, err, want)
	}
	got, err = r.LookupMXRecords(ctx, "null.test")
	if want := []MX{{"", 0}}; err != nil || !slices.Equal(got, want) {
		t.Fatalf("null.test: got %v %v, want %v", got, err, want)
	}
	for _, c := range []struct {
		name               string
		notFound, nxdomain bool
	}{
		{"nomx.test", true, false},    // NODATA: the implicit MX applies
		{"nowhere.test", true, true},  // NXDOMAIN
		{"bad..name", true, true},     // cannot be asked
		{"broken.test", false, false}, // SERVFAIL: temporary
	} {
		_, err := r.LookupMXRecords(ctx, c.name)
		if err == nil || errors.Is(err, ErrNotFound) != c.notFound || IsNXDomain(err) != c.nxdomain {
			t.Errorf("%s: got %v (NXDomain %v), want not found %v, NXDOMAIN %v", c.name, err, IsNXDomain(err), c.notFound, c.nxdomain)
		}
	}
}

func TestLookupAddrs(t *testing.T) {
	z := startDNS(t,
		`both.test. A 192.0.2.1`,
		`both.test. AAAA 2001:db8::1`,
		`v6.test. AAAA 2001:db8::2`,
		`mx-only.test. MX 10 mx.test.`,
	)
	z.servfail("broken.test")
	r := NewResolver([]string{z.Addr}, 2*time.Second)
	for _, tt := range []struct {
		host     string
		want     string // the addresses, space-separated
		notFound bool   // an error matching ErrNotFound
		failed   bool   // another error
	}{
		{host: "both.test", want: "192.0.2.1 2001:db8::1"},
		{host: "v6.test", want: "2001:db8::2"},
		{host: "192.0.2.7", want: "192.0.2.7"},
		{host: "mx-only.test", notFound: true},
		{host: "nowhere.test", notFound: true},
		{host: "broken.test", failed: true},
	} {
		got, err := r.LookupAddrs(t.Context(), tt.host)
		var s []string
		for _, a := range got {
			s = append(s, a.String())
		}
		switch {
		case tt.notFound && !errors.Is(err, ErrNotFound), tt.failed && (err == nil || errors.Is(err, ErrNotFound)):
			t.Errorf("%s: %v, %v; want notFound=%v failed=%v", tt.host, got, err, tt.notFound, tt.failed)
		case !tt.notFound && !tt.failed && (err != nil || strings.Join(s, " ") != tt.want):
			t.Errorf("%s: %v, %v; want %s", tt.host, s, err, tt.want)
		}
	}
}
