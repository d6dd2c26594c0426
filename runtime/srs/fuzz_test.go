package srs

import (
	"errors"
	"strings"
	"testing"
)

func FuzzReverse(f *testing.F) {
	for _, s := range []string{
		"SRS0=xRfu=JX=orig.example=user@fwd.example",
		"srs0=xrfu=jx=orig.example=user@fwd.example",
		"SRS1=4DxU=fwd.example==xRfu=JX=orig.example=user@fwd.example",
		"SRS0+xRfu=JX=orig.example=a=b@fwd.example",
		"SRS1-=@fwd.example", "SRS0=@", "@", "", "SRS0==== @fwd.example",
		"SRS0=xRfu=JX=orig.example=ünï@fwd.example",
	} {
		f.Add(s)
	}
	now := day311
	r := newRewriter(f, "fwd.example", &now, "abc", "old")
	f.Fuzz(func(t *testing.T, addr string) {
		got, err := r.Reverse(addr)
		if err != nil {
			for _, known := range []error{ErrNotSRS, ErrForeignDomain, ErrMalformed, ErrBadHash, ErrExpired} {
				if errors.Is(err, known) {
					return
				}
			}
			t.Fatalf("Reverse(%q): unclassified error %v", addr, err)
		}
		at := strings.LastIndexByte(got, '@')
		if at <= 0 || at == len(got)-1 {
			t.Fatalf("Reverse(%q) = %q, not an address", addr, got)
		}
	})
}

// FuzzForwardReverse checks the property the box relies on: whatever
// Forward rewrites, Reverse brings back to where a bounce must go, also
// after a mail system lowercased the address.
func FuzzForwardReverse(f *testing.F) {
	for _, s := range [][2]string{
		{"user", "orig.example"}, {"a+b=c.d", "orig.example"}, {"ünï", "例子.测试"},
		{"SRS0=HHHH=TT=d.example=u", "fwd0.example"}, {"srs0+x", "fwd0.example"},
		{"SRS1=HHHH=fwd0.example==HHHH=TT=d.example=u", "fwd1.example"},
		{"SRS1=x", "orig.example"}, {"user", "FWD.example"}, {"User", "[192.0.2.1]"},
	} {
		f.Add(s[0], s[1])
	}
	now := day311
	r := newRewriter(f, "fwd.example", &now, "abc")
	f.Fuzz(func(t *testing.T, local, domain string) {
		sender := local + "@" + domain
		fwd, err := r.Forward(sender)
		if err != nil {
			return
		}
		if strings.EqualFold(domain, "fwd.example") {
			if fwd != sender {
				t.Fatalf("Forward(%q) = %q, want it unchanged", sender, fwd)
			}
			return
		}
		want := sender
		if _, rest, ok := cutTag(local, "SRS1"); ok {
			if p := strings.SplitN(rest, "=", 3); len(p) == 3 && p[1] != "" && p[2] != "" && isSep(p[2][0]) {
				want = "SRS0" + p[2] + "@" + p[1] // one step back: the first forwarder
			}
		} else if sep, rest, ok := cutTag(local, "SRS0"); ok {
			want = "SRS0" + sep + rest + "@" + domain
		}
		got, err := r.Reverse(fwd)
		if err != nil || got != want {
			t.Fatalf("Reverse(Forward(%q) = %q) = %q, %v; want %q", sender, fwd, got, err, want)
		}
		// The SRS0 tag Reverse writes back is upper case.
		got, err = r.Reverse(asciiLower(fwd))
		if err != nil || asciiLower(got) != asciiLower(want) {
			t.Fatalf("Reverse(%q) = %q, %v; want %q", asciiLower(fwd), got, err, asciiLower(want))
		}
	})
}
