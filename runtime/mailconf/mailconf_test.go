package mailconf

import (
	"net/netip"
	"testing"
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
