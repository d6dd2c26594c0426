package mtasts

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParsePolicy(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		want    *Policy
		wantErr string // substring; empty means success
	}{
		{
			name: "RFC 8461 3.2 example, CRLF",
			body: "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmx: backupmx.example.com\r\nmax_age: 604800\r\n",
			want: &Policy{Mode: ModeEnforce, MX: []string{"mail.example.com", "*.example.net", "backupmx.example.com"}, MaxAge: 604800 * time.Second},
		},
		{
			name: "LF, no final line break, blanks around the colon",
			body: "version :STSv1\nmode:   testing\nmx:\tMX1.Example.COM.\nmax_age: 86400",
			want: &Policy{Mode: ModeTesting, MX: []string{"mx1.example.com"}, MaxAge: 86400 * time.Second},
		},
		{
			name: "mode none without mx",
			body: "version: STSv1\nmode: none\nmax_age: 0\n",
			want: &Policy{Mode: ModeNone, MaxAge: 0},
		},
		{
			name: "unknown keys ignored",
			body: "version: STSv1\nmode: enforce\nfoo_bar.baz-1: any thing here\nmx: a.example.com\nmax_age: 31557600\n",
			want: &Policy{Mode: ModeEnforce, MX: []string{"a.example.com"}, MaxAge: MaxMaxAge * time.Second},
		},
		{name: "bad version", body: "version: STSv2\nmode: enforce\nmx: a.example.com\nmax_age: 1\n", wantErr: `version "STSv2"`},
		{name: "lower-case version", body: "version: stsv1\nmode: enforce\nmx: a.example.com\nmax_age: 1\n", wantErr: "want STSv1"},
		{name: "no version", body: "mode: enforce\nmx: a.example.com\nmax_age: 1\n", wantErr: "no version"},
		{name: "no mode", body: "version: STSv1\nmx: a.example.com\nmax_age: 1\n", wantErr: "no mode"},
		{name: "no max_age", body: "version: STSv1\nmode: enforce\nmx: a.example.com\n", wantErr: "no max_age"},
		{name: "no mx in enforce", body: "version: STSv1\nmode: enforce\nmax_age: 1\n", wantErr: "no mx in mode enforce"},
		{name: "no mx in testing", body: "version: STSv1\nmode: testing\nmax_age: 1\n", wantErr: "no mx in mode testing"},
		{name: "bad mode", body: "version: STSv1\nmode: Enforce\nmx: a.example.com\nmax_age: 1\n", wantErr: `mode "Enforce"`},
		{name: "max_age too large", body: "version: STSv1\nmode: enforce\nmx: a.example.com\nmax_age: 31557601\n", wantErr: "above the maximum"},
		{name: "max_age 11 digits", body: "version: STSv1\nmode: enforce\nmx: a.example.com\nmax_age: 00000000001\n", wantErr: "1 to 10 digits"},
		{name: "max_age negative", body: "version: STSv1\nmode: enforce\nmx: a.example.com\nmax_age: -1\n", wantErr: "1 to 10 digits"},
		{name: "max_age twice", body: "version: STSv1\nmode: enforce\nmx: a.example.com\nmax_age: 1\nmax_age: 2\n", wantErr: "max_age given twice"},
		{name: "mode twice", body: "version: STSv1\nmode: enforce\nmode: none\nmx: a.example.com\nmax_age: 1\n", wantErr: "mode given twice"},
		{name: "empty value", body: "version: STSv1\nmode:\nmx: a.example.com\nmax_age: 1\n", wantErr: "mode has no value"},
		{name: "no colon", body: "version: STSv1\nmode enforce\n", wantErr: "line 2"},
		{name: "blank line", body: "version: STSv1\n\nmode: enforce\nmx: a.example.com\nmax_age: 1\n", wantErr: "line 2"},
		{name: "empty body", body: "", wantErr: "line 1"},
		{name: "stray CR", body: "version: STSv1\rmode: enforce\n", wantErr: "carriage return"},
		{name: "wildcard in the middle", body: "version: STSv1\nmode: enforce\nmx: a.*.example.com\nmax_age: 1\n", wantErr: "mx \"a.*.example.com\""},
		{name: "bare wildcard", body: "version: STSv1\nmode: enforce\nmx: *\nmax_age: 1\n", wantErr: "is not a host name"},
		{name: "single label", body: "version: STSv1\nmode: enforce\nmx: localhost\nmax_age: 1\n", wantErr: "is not a host name"},
		{name: "wildcard over a TLD", body: "version: STSv1\nmode: enforce\nmx: *.com\nmax_age: 1\n", wantErr: "is not a host name"},
		{name: "underscore in mx", body: "version: STSv1\nmode: enforce\nmx: a_b.example.com\nmax_age: 1\n", wantErr: "is not a host name"},
		{name: "bad key", body: "version: STSv1\n_x: 1\n", wantErr: "invalid key"},
		{name: "control char in extension", body: "version: STSv1\nx: a\x01b\n", wantErr: "invalid value of x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePolicy(tt.body)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("ParsePolicy = %+v, want error containing %q", got, tt.wantErr)
				}
				if !errors.Is(err, ErrPolicySyntax) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %q, want ErrPolicySyntax containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParsePolicy: %v", err)
			}
			if got.Mode != tt.want.Mode || got.MaxAge != tt.want.MaxAge || !slices.Equal(got.MX, tt.want.MX) {
				t.Fatalf("ParsePolicy = %+v, want %+v", got, tt.want)
			}
			// String gives a body that parses to the same policy.
			again, err := ParsePolicy(got.String())
			if err != nil || again.Mode != got.Mode || again.MaxAge != got.MaxAge || !slices.Equal(again.MX, got.MX) {
				t.Fatalf("round trip of %q: %+v, %v", got.String(), again, err)
			}
		})
	}
}

func TestMatchMX(t *testing.T) {
	p := &Policy{Mode: ModeEnforce, MX: []string{"mail.example.org", "*.example.com"}}
	tests := []struct {
		host string
		want bool
	}{
		{"mail.example.org", true},
		{"MAIL.Example.ORG.", true},
		{"mx.example.com", true},
		{"MX1.EXAMPLE.COM.", true},
		{"example.com", false},       // the wildcard needs one label
		{"a.b.example.com", false},   // and only one
		{".example.com", false},      // an empty label is none
		{"xmail.example.org", false}, // exact names are exact
		{"mail.example.org.evil", false},
		{"example.org", false},
		{"", false},
		{"evilexample.com", false},
	}
	for _, tt := range tests {
		if got := p.MatchMX(tt.host); got != tt.want {
			t.Errorf("MatchMX(%q) = %v, want %v", tt.host, got, tt.want)
		}
	}
	var none *Policy
	if none.MatchMX("mx.example.com") {
		t.Error("a nil policy matched")
	}
}

func TestParseRecord(t *testing.T) {
	tests := []struct {
		txt     string
		wantID  string
		wantErr string
	}{
		{txt: "v=STSv1; id=20160831085700Z;", wantID: "20160831085700Z"}, // RFC 8461 3.1
		{txt: "v=STSv1;id=abc", wantID: "abc"},
		{txt: "v=STSv1 ;\tid=abc ;  ", wantID: "abc"},
		{txt: "v=STSv1; ext=val.ue; id=X1", wantID: "X1"},
		{txt: "v=STSv1; id=" + strings.Repeat("a", 32), wantID: strings.Repeat("a", 32)},
		{txt: "v=STSv1; id=" + strings.Repeat("a", 33), wantErr: "1 to 32"},
		{txt: "v=STSv1; id=a-b", wantErr: "1 to 32"},
		{txt: "v=STSv1; id=", wantErr: "1 to 32"},
		{txt: "v=STSv1;", wantErr: "no id"},
		{txt: "v=STSv1", wantErr: "no id"},
		{txt: "v=STSv1; ext=1", wantErr: "no id"},
		{txt: "v=STSv1; id=a; id=b", wantErr: "twice"},
		{txt: "v=STSv1; ID=abc", wantErr: "no id"},
		{txt: "v=STSv2; id=abc", wantErr: "does not begin"},
		{txt: " v=STSv1; id=abc", wantErr: "does not begin"},
		{txt: "id=abc; v=STSv1", wantErr: "does not begin"},
		{txt: "v=STSv1; id=abc;; ", wantErr: "not key=value"},
		{txt: "v=STSv1; id=abc; x=a=b", wantErr: "invalid value of x"},
		{txt: "v=STSv1; id=abc; -x=1", wantErr: "invalid key"},
	}
	for _, tt := range tests {
		r, err := ParseRecord(tt.txt)
		if tt.wantErr != "" {
			if err == nil || !errors.Is(err, ErrRecordSyntax) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseRecord(%q) = %+v, %v; want ErrRecordSyntax containing %q", tt.txt, r, err, tt.wantErr)
			}
			continue
		}
		if err != nil || r.ID != tt.wantID {
			t.Errorf("ParseRecord(%q) = %+v, %v; want id %q", tt.txt, r, err, tt.wantID)
		}
	}
}

func TestSelectRecord(t *testing.T) {
	tests := []struct {
		name   string
		txts   []string
		wantID string
		want   error
	}{
		{"one among others", []string{"v=spf1 -all", "v=STSv1; id=one;", "hello"}, "one", nil},
		{"none", []string{"v=spf1 -all"}, "", ErrNoRecord},
		{"empty", nil, "", ErrNoRecord},
		{"two", []string{"v=STSv1; id=one;", "v=STSv1; id=two;"}, "", ErrRecordSyntax},
		{"one invalid", []string{"v=STSv1; id=bad!"}, "", ErrRecordSyntax},
		// "begin with v=STSv1;" is literal (RFC 8461 3.1): others are discarded.
		{"blank before separator discarded", []string{"v=STSv1 ; id=one"}, "", ErrNoRecord},
		{"no separator discarded", []string{"v=STSv1"}, "", ErrNoRecord},
	}
	for _, tt := range tests {
		r, err := SelectRecord(tt.txts)
		if tt.want != nil {
			if !errors.Is(err, tt.want) {
				t.Errorf("%s: SelectRecord = %+v, %v; want %v", tt.name, r, err, tt.want)
			}
			continue
		}
		if err != nil || r.ID != tt.wantID {
			t.Errorf("%s: SelectRecord = %+v, %v; want id %q", tt.name, r, err, tt.wantID)
		}
	}
}

func TestDecide(t *testing.T) {
	enforce := &Policy{Mode: ModeEnforce, MX: []string{"*.example.com"}, MaxAge: time.Hour}
	testing_ := &Policy{Mode: ModeTesting, MX: []string{"*.example.com"}, MaxAge: time.Hour}
	none := &Policy{Mode: ModeNone, MaxAge: time.Hour}
	tests := []struct {
		name   string
		p      *Policy
		host   string
		tlsOK  bool
		want   Action
		reason string
	}{
		{"no policy, no TLS", nil, "mx.other.org", false, Deliver, ""},
		{"mode none", none, "mx.other.org", false, Deliver, ""},
		{"enforce, listed, TLS", enforce, "mx.example.com", true, Deliver, ""},
		{"enforce, listed, no TLS", enforce, "mx.example.com", false, Refuse, "no TLS"},
		{"enforce, not listed", enforce, "mx.other.org", true, Refuse, "not listed"},
		{"enforce, apex not listed", enforce, "example.com", true, Refuse, "not listed"},
		{"testing, listed, TLS", testing_, "mx.example.com", true, Deliver, ""},
		{"testing, not listed", testing_, "mx.other.org", true, DeliverAndLog, "not listed"},
		{"testing, no TLS", testing_, "mx.example.com", false, DeliverAndLog, "no TLS"},
	}
	for _, tt := range tests {
		d := Decide(tt.p, tt.host, tt.tlsOK)
		if d.Action != tt.want || !strings.Contains(d.Reason, tt.reason) || (tt.reason == "") != (d.Reason == "") {
			t.Errorf("%s: Decide = %v %q, want %v with %q", tt.name, d.Action, d.Reason, tt.want, tt.reason)
		}
	}
}
