package tests

import (
	"strings"
	"testing"
)

// TestMailTLSSuites: openssl s_client against every TLS endpoint of the
// daemon, implicit and STARTTLS: TLS 1.3 is chosen when offered; TLS 1.2
// with an AEAD suite works, with a CBC suite (SHA-1 MAC) it does not.
func TestMailTLSSuites(t *testing.T) {
	t.Parallel()
	openssl := needTool(t, "openssl")
	d := startMail(t, stateOpts{}, "smtp", "submission", "submissions", "pop3", "pop3s", "imap", "imaps")
	endpoints := []struct {
		server   string
		starttls string // s_client's -starttls protocol; "" for implicit TLS
	}{
		{"smtp", "smtp"}, {"submission", "smtp"}, {"submissions", ""},
		{"pop3", "pop3"}, {"pop3s", ""}, {"imap", "imap"}, {"imaps", ""},
	}
	offers := []struct {
		name     string
		args     []string
		protocol string // "" when the handshake must fail
	}{
		{"TLS 1.2 CBC AES-128", []string{"-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA"}, ""},
		{"TLS 1.2 CBC AES-256", []string{"-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-SHA"}, ""},
		{"TLS 1.2 GCM", []string{"-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"}, "TLSv1.2"},
		{"TLS 1.2 ChaCha20", []string{"-tls1_2", "-cipher", "ECDHE-ECDSA-CHACHA20-POLY1305"}, "TLSv1.2"},
		{"TLS 1.3", []string{"-tls1_3"}, "TLSv1.3"},
		{"any", nil, "TLSv1.3"},
	}
	for _, ep := range endpoints {
		for _, o := range offers {
			t.Run(ep.server+" "+o.name, func(t *testing.T) {
				args := []string{"s_client", "-connect", d.addr(ep.server)}
				if ep.starttls != "" {
					args = append(args, "-starttls", ep.starttls)
				}
				args = append(args, o.args...)
				code, out := runTool(t, nil, openssl, args...)
				ok := code == 0 && strings.Contains(out, "Protocol  : "+o.protocol) && !strings.Contains(out, "Cipher is (NONE)")
				if o.protocol != "" && !ok {
					t.Errorf("exit %d, want a %s session:\n%s", code, o.protocol, out)
				}
				if o.protocol == "" && !strings.Contains(out, "Cipher is (NONE)") {
					t.Errorf("exit %d, a session was made:\n%s", code, out)
				}
			})
		}
	}
}
