package tests

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
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

// TestMailSnail: s-nail, a mail client that checks the certificate's
// names itself (DNS names and Common Name only, RFC 2595), with the box's
// self-signed certificate trusted, on 127.0.0.1: it sends over SMTPS and
// submission with STARTTLS, and reads over IMAPS, IMAP with STARTTLS,
// POP3S and POP3 with STLS.
func TestMailSnail(t *testing.T) {
	t.Parallel()
	snailPath := needTool(t, "s-nail")
	d := startMail(t, stateOpts{}, "submission", "submissions", "pop3", "pop3s", "imap", "imaps")
	env := append(os.Environ(), "HOME="+t.TempDir(), "MAILRC=/dev/null")
	common := []string{"-n", "-Sv15-compat", "-Stls-verify=strict", "-Stls-ca-no-defaults",
		"-Stls-ca-file=" + filepath.Join(d.data, "tls", "self-signed.crt")}
	userURL := func(scheme, server, local, password string) string {
		return fmt.Sprintf("%s://%s:%s@%s", scheme, url.QueryEscape(addr(local)), url.QueryEscape(password), d.addr(server))
	}
	// snail runs s-nail with input on its standard input.
	snail := func(input string, args ...string) (int, string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, snailPath, append(common, args...)...)
		cmd.Env = env
		cmd.Stdin = strings.NewReader(input)
		out, err := cmd.CombinedOutput()
		if ee, ok := errors.AsType[*exec.ExitError](err); ok {
			return ee.ExitCode(), string(out)
		}
		if err != nil {
			t.Fatalf("s-nail: %v\n%s", err, out)
		}
		return 0, string(out)
	}

	sends := []struct{ name, subject string }{{"SMTPS", "snail-smtps"}, {"submission STARTTLS", "snail-submission"}}
	for _, s := range sends {
		args := []string{"-Sfrom=" + addr("rene.ricard"), "-s", s.subject}
		if s.name == "SMTPS" {
			args = append(args, "-Smta="+userURL("smtps", "submissions", "rene.ricard", renePassword))
		} else {
			args = append(args, "-Smta="+userURL("smtp", "submission", "rene.ricard", renePassword), "-Ssmtp-use-starttls")
		}
		if code, out := snail("Bonjour\n", append(args, addr("thomas.petit"))...); code != 0 {
			t.Errorf("send over %s: exit %d\n%s", s.name, code, out)
		}
	}
	reads := []struct {
		name string
		args []string
	}{
		{"IMAPS", []string{"-f", userURL("imaps", "imaps", "thomas.petit", thomasPassword)}},
		{"IMAP STARTTLS", []string{"-Simap-use-starttls", "-f", userURL("imap", "imap", "thomas.petit", thomasPassword)}},
		{"POP3S", []string{"-f", userURL("pop3s", "pop3s", "thomas.petit", thomasPassword)}},
		{"POP3 STLS", []string{"-Spop3-use-starttls", "-f", userURL("pop3", "pop3", "thomas.petit", thomasPassword)}},
	}
	for _, r := range reads {
		code, out := snail("from *\nquit\n", append([]string{"-R"}, r.args...)...)
		if code != 0 || strings.Contains(out, "does not match") {
			t.Errorf("read over %s: exit %d\n%s", r.name, code, out)
			continue
		}
		for _, s := range sends {
			if !strings.Contains(out, s.subject) {
				t.Errorf("read over %s: no %s in\n%s", r.name, s.subject, out)
			}
		}
	}
}
