package mailauth

import (
	"bufio"
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
)

func TestIsOurs(t *testing.T) {
	cases := []struct {
		value string
		want  bool
	}{
		{" mx.box.test; spf=pass smtp.mailfrom=a@b.test", true},
		{" MX.Box.Test; none", true},
		{"mx.box.test 1; dkim=pass header.d=b.test", true},
		{" (comment (nested)) mx.box.test; none", true},
		{"\r\n\tmx.box.test;\r\n\tspf=pass", true},
		{` "mx.box.test"; none`, true},
		{` "mx.b\ox.test"; none`, true},
		{" mx.box.test", true},
		{" mx.box.test.; spf=pass", true},
		{" MX.BOX.TEST. 1; none", true},
		{` "Mx.Box.Test."; none`, true},
		{" mx.box.test..; none", false},
		{" .; none", false},
		{" other.test; spf=pass", false},
		{" mx.box.test.evil; none", false},
		{" evil.mx.box.test; none", false},
		{" (mx.box.test) other.test; none", false},
		{" (unterminated mx.box.test; none", false},
		{` "mx.box.test; none`, false},
		{"", false},
		{" ; spf=pass", false},
	}
	for _, c := range cases {
		if got := IsOurs(c.value, "mx.box.test"); got != c.want {
			t.Errorf("IsOurs(%q) = %v, want %v", c.value, got, c.want)
		}
	}
	if IsOurs(" x; none", "") || IsOurs(" .; none", ".") || IsOurs(" ; none", "") {
		t.Error("empty authserv-id matched")
	}
	// The box's host name written with its final dot.
	if !IsOurs(" mx.box.test; none", "mx.box.test.") || !IsOurs(" MX.box.test.; none", "mx.box.test.") {
		t.Error("authserv-id with a final dot not matched")
	}
}

func TestReadHeader(t *testing.T) {
	msg := "From: a@b.test\r\nSubject: x\r\n\r\nbody\r\n\r\nmore"
	for _, r := range []func() *bufio.Reader{
		func() *bufio.Reader { return bufio.NewReaderSize(strings.NewReader(msg), 16) },
		func() *bufio.Reader { return bufio.NewReaderSize(iotest.OneByteReader(strings.NewReader(msg)), 16) },
	} {
		br := r()
		hdr, ended, err := readHeader(br, 1<<10)
		if err != nil || !ended || string(hdr) != "From: a@b.test\r\nSubject: x\r\n\r\n" {
			t.Fatalf("got %q %v %v", hdr, ended, err)
		}
		var rest bytes.Buffer
		if _, err := rest.ReadFrom(br); err != nil || rest.String() != "body\r\n\r\nmore" {
			t.Fatalf("rest %q %v", rest.String(), err)
		}
	}
	// A long line is not mistaken for its blank end.
	long := "X: " + strings.Repeat("y", 40) + "\r\n\r\n"
	hdr, ended, err := readHeader(bufio.NewReaderSize(strings.NewReader(long), 16), 1<<10)
	if err != nil || !ended || string(hdr) != long {
		t.Fatalf("long: %q %v %v", hdr, ended, err)
	}
	hdr, ended, err = readHeader(bufio.NewReaderSize(strings.NewReader("From: a@b.test\r\n"), 16), 1<<10)
	if err != nil || ended || string(hdr) != "From: a@b.test\r\n" {
		t.Fatalf("no end: %q %v %v", hdr, ended, err)
	}
	_, _, err = readHeader(bufio.NewReaderSize(strings.NewReader(strings.Repeat("X: y\r\n", 100)), 16), 64)
	if !errors.Is(err, errHeaderTooLarge) {
		t.Fatalf("too large: %v", err)
	}
	_, _, err = readHeader(bufio.NewReader(iotest.ErrReader(errors.New("boom"))), 64)
	if err == nil || err.Error() != "boom" {
		t.Fatalf("read error: %v", err)
	}
}

func TestFromDomain(t *testing.T) {
	cases := []struct {
		header string
		want   string // "" means an error
	}{
		{"From: alice@example.test\r\n", "example.test"},
		{"from: Alice <ALICE@Example.TEST>\r\n", "example.test"},
		{"From: \"Doe, John\" <j@example.test>\r\n", "example.test"},
		{"From: =?x-unknown?Q?Al=E9?= <a@example.test>\r\n", "example.test"},
		{"From: =?utf-8?Q?Al=C3=A9?=\r\n <a@example.test>\r\n", "example.test"},
		{"From: a@example.test.\r\n", ""}, // net/mail refuses it
		{"From : a@example.test\r\n", "example.test"},
		{"Subject: x\r\n", ""},
		{"From: a@x.test\r\nFrom: b@x.test\r\n", ""},
		{"From: a@x.test, b@x.test\r\n", ""},
		{"From: undisclosed\r\n", ""},
		{"From: a@[192.0.2.1]\r\n", ""},
		{"From: a@localhost\r\n", ""},
		{"From: Group: a@x.test;\r\n", "x.test"}, // one address in a group
	}
	for _, c := range cases {
		fields, _ := splitHeader([]byte(c.header + "\r\n"))
		got, err := fromDomain(fields)
		if got != c.want || (err == nil) != (c.want != "") {
			t.Errorf("%q: got %q, %v; want %q", c.header, got, err, c.want)
		}
	}
}

func TestFromAddresses(t *testing.T) {
	for _, tt := range []struct {
		value string
		want  []string // nil: an error
	}{
		{" Alice <alice@example.test>", []string{"alice@example.test"}},
		{" alice@example.test (Alice),\r\n\tBob <bob@example.test>", []string{"alice@example.test", "bob@example.test"}},
		{" Team: a@example.test, b@example.test;", []string{"a@example.test", "b@example.test"}},
		{" =?x-unknown?q?A?= <a@example.test>", []string{"a@example.test"}},
		{" undisclosed:;", []string{}},
		{" <a@example.test", nil},
		{"", nil},
	} {
		got, err := FromAddresses(tt.value)
		if tt.want == nil {
			if err == nil {
				t.Errorf("FromAddresses(%q) = %q, want an error", tt.value, got)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("FromAddresses(%q) = %q, %v; want %q", tt.value, got, err, tt.want)
		}
	}
}
