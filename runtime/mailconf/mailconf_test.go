package mailconf

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestPasswordAuthAllowed(t *testing.T) {
	lan := []netip.Prefix{netip.MustParsePrefix("192.168.1.0/24")}
	tests := []struct {
		legacy bool
		tls    bool
		remote string
		want   bool
	}{
		{false, true, "203.0.113.5", true},
		{false, false, "192.168.1.20", false},
		{true, false, "192.168.1.20", true},
		{true, false, "::ffff:192.168.1.20", true},
		{true, false, "127.0.0.1", true},
		{true, false, "::1", true},
		{true, false, "192.168.2.20", false},
		{true, false, "203.0.113.5", false},
		{true, true, "203.0.113.5", true},
	}
	for _, tt := range tests {
		s := Settings{LAN: lan, LegacyPlainAuth: tt.legacy}
		if got := s.PasswordAuthAllowed(tt.tls, netip.MustParseAddr(tt.remote)); got != tt.want {
			t.Errorf("legacy=%v tls=%v from %s: %v, want %v", tt.legacy, tt.tls, tt.remote, got, tt.want)
		}
	}
}

func TestLiveDefault(t *testing.T) {
	var l Live
	if got := l.Load(); got.MaxMessageBytes != DefaultMaxMessageBytes || got.Hostname == "" {
		t.Fatalf("zero Live = %+v", got)
	}
	s := Default()
	s.Hostname = "mail.ma-societe.fr"
	l.Store(s)
	if l.Load().Hostname != "mail.ma-societe.fr" {
		t.Fatal("Store not seen")
	}
}

func TestMessageLimit(t *testing.T) {
	for _, tt := range []struct{ set, want int64 }{
		{0, DefaultMaxMessageBytes},
		{-1, DefaultMaxMessageBytes},
		{10 << 20, 10 << 20},
	} {
		s := Settings{MaxMessageBytes: tt.set}
		if got := s.MessageLimit(); got != tt.want {
			t.Errorf("MaxMessageBytes %d: MessageLimit %d, want %d", tt.set, got, tt.want)
		}
	}
}

func TestRelayPassword(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name  string
		relay *Relay
		want  string
		err   string
	}{
		{"no relay", nil, "", ""},
		{"no password", &Relay{Host: "smtp.isp.fr", Port: 587}, "", ""},
		{"inline", &Relay{Password: "s3cret"}, "s3cret", ""},
		{"file", &Relay{PasswordFile: write("pw", "s3cret\n")}, "s3cret", ""},
		{"file with CRLF and a second line", &Relay{PasswordFile: write("crlf", "s3cret\r\nignored\n")}, "s3cret", ""},
		{"file without a line end", &Relay{PasswordFile: write("bare", "s3cret")}, "s3cret", ""},
		{"file wins over nothing inline", &Relay{PasswordFile: write("pw2", "from-file\n"), Password: ""}, "from-file", ""},
		{"empty file", &Relay{PasswordFile: write("empty", "\n")}, "", "the first line is empty"},
		{"missing file", &Relay{PasswordFile: filepath.Join(dir, "missing")}, "", "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := Default()
			s.Relay = tt.relay
			got, err := s.RelayPassword()
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("RelayPassword = %q, %v; want an error with %q", got, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("RelayPassword = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

// TestDefaultOutbound checks the outbound defaults against the schema's.
func TestDefaultOutbound(t *testing.T) {
	s := Default()
	if s.Mode != ModeDirect || s.Relay != nil || s.MinBackoff != 5*time.Minute || s.MaxBackoff != time.Hour || s.Lifetime != 5*24*time.Hour || s.DelayWarning != 4*time.Hour {
		t.Errorf("Default() outbound = %+v", s)
	}
}
