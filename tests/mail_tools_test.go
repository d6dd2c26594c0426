package tests

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailfountain.dev/mailfountain/runtime/testenv"
)

// runTool runs a command with a timeout; its exit code and combined output.
func runTool(t *testing.T, env []string, name string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	if env != nil {
		cmd.Env = env
	}
	out, err := cmd.CombinedOutput()
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		return ee.ExitCode(), string(out)
	}
	if err != nil {
		t.Fatalf("%s: %v\n%s", name, err, out)
	}
	return 0, string(out)
}

// TestMailSwaks: swaks, the SMTP test tool admins use: the MX is no open
// relay, and submission authenticates with PLAIN and LOGIN over TLS.
func TestMailSwaks(t *testing.T) {
	t.Parallel()
	swaks := needTool(t, "swaks")
	// swaks speaks TLS through Net::SSLeay, only recommended by its
	// Debian package.
	if code, out := runTool(t, nil, needTool(t, "perl"), "-MNet::SSLeay", "-e", "1"); code != 0 {
		msg := "swaks cannot use TLS without the perl module Net::SSLeay (Debian: libnet-ssleay-perl): " + out
		testenv.Unavailable(t, "%s", msg)
	}
	d := startMail(t, stateOpts{}, "smtp", "submission", "submissions")

	// swaks' exit codes: 0 sent, 24 no RCPT accepted, 28 AUTH failed.
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string // a line of the transcript (regexp-free substring)
		tag      string // Subject of a message to find delivered
		box      string
	}{
		{name: "open relay", args: []string{"--server", d.addr("smtp"), "--from", "spammer@sender.example", "--to", "someone@example.com"},
			wantCode: 24, wantOut: "<** 5"},
		{name: "MX to an alias", args: []string{"--server", d.addr("smtp"), "--from", "client@sender.example", "--to", addr("contact")},
			tag: "swaks-mx", box: "charline.durand"},
		{name: "bare postmaster (RFC 5321 4.5.1)", args: []string{"--server", d.addr("smtp"), "--from", "client@sender.example", "--to", "postmaster"},
			wantOut: "-> RCPT TO:<postmaster>", tag: "swaks-postmaster", box: "postmaster"},
		{name: "STARTTLS AUTH PLAIN", args: []string{"--server", d.addr("submission"), "-tls", "-a", "PLAIN",
			"-au", addr("rene.ricard"), "-ap", renePassword, "--from", addr("rene.ricard"), "--to", addr("thomas.petit")},
			wantOut: "<~  235", tag: "swaks-plain", box: "thomas.petit"},
		{name: "STARTTLS AUTH LOGIN", args: []string{"--server", d.addr("submission"), "-tls", "-a", "LOGIN",
			"-au", addr("andre.mouve"), "-ap", andrePassword, "--from", addr("commercial"), "--to", addr("support")},
			wantOut: "<~  235", tag: "swaks-login", box: "charline.durand"},
		{name: "TLS on connect AUTH PLAIN", args: []string{"--server", d.addr("submissions"), "-tlsc", "-a", "PLAIN",
			"-au", addr("thomas.petit"), "-ap", thomasPassword, "--from", addr("thomas.petit"), "--to", addr("rene")},
			wantOut: "<~  235", tag: "swaks-tlsc", box: "rene.ricard"},
		{name: "wrong password", args: []string{"--server", d.addr("submission"), "-tls", "-a", "PLAIN",
			"-au", addr("rene.ricard"), "-ap", "not-the-password", "--from", addr("rene.ricard"), "--to", addr("thomas.petit")},
			wantCode: 28, wantOut: "<~* 535"},
		{name: "relay after AUTH is queued", args: []string{"--server", d.addr("submission"), "-tls", "-a", "LOGIN",
			"-au", addr("rene.ricard"), "-ap", renePassword, "--from", addr("rene.ricard"), "--to", "client@example.com"},
			wantOut: "<~  250 2.0.0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"--timeout", "20", "--helo", "swaks.test.example"}, tt.args...)
			if tt.tag != "" {
				args = append(args, "--header", "Subject: "+tt.tag, "--body", "sent by swaks: "+tt.tag)
			}
			code, out := runTool(t, nil, swaks, args...)
			if code != tt.wantCode || !strings.Contains(out, tt.wantOut) {
				t.Fatalf("swaks %s: exit %d, want %d with %q in the transcript:\n%s", strings.Join(args, " "), code, tt.wantCode, tt.wantOut, out)
			}
			if tt.tag != "" {
				got := withHeader(d.inbox(t, tt.box), "Subject", tt.tag)
				if len(got) != 1 || !strings.Contains(string(got[0].data), "sent by swaks: "+tt.tag) {
					t.Errorf("%d copies of %s in %s, want 1 with swaks' body", len(got), tt.tag, tt.box)
				}
			}
		})
	}
}

// TestMailFetchmail: fetchmail, a second POP3 and IMAP client, as a
// user's fetchmail would run it: TLS without certificate check (the box's
// is self-signed), keep then fetch and delete.
func TestMailFetchmail(t *testing.T) {
	t.Parallel()
	fetchmail := needTool(t, "fetchmail")
	d := startMail(t, stateOpts{}, "smtp", "pop3", "pop3s", "imap", "imaps")
	const box = "andre.mouve"
	deliver := func(tags ...string) {
		for _, tag := range tags {
			sendMX(t, d.addr("smtp"), "bob@sender.example", []string{addr(box)}, message("bob@sender.example", addr(box), tag, "body of "+tag+"\n"))
		}
	}
	home := t.TempDir()
	env := append(os.Environ(), "HOME="+home)
	if u, err := user.Current(); err == nil {
		// As root fetchmail delivers to an MDA as this user.
		env = append(env, "FETCHMAILUSER="+u.Username)
	}

	fetch := func(name, proto, server, tlsOpts, keep string) string {
		t.Helper()
		out := filepath.Join(home, name+".mbox")
		rc := filepath.Join(home, name+".fetchmailrc")
		conf := fmt.Sprintf("set no syslog\nset no bouncemail\n"+
			"poll 127.0.0.1 with protocol %s service %d\n"+
			"  user \"%s\" there with password \"%s\"\n"+
			"  %s\n  %s fetchall\n  mda \"cat >> %s\"\n",
			proto, d.port(t, server), addr(box), andrePassword, tlsOpts, keep, out)
		if err := os.WriteFile(rc, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		code, log := runTool(t, env, fetchmail, "--fetchmailrc", rc, "--pidfile", filepath.Join(home, name+".pid"), "-v")
		if code != 0 {
			t.Fatalf("fetchmail %s (%s on %s): exit %d, want 0 (mail fetched):\n%s\n%s", name, proto, server, code, conf, log)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatalf("fetchmail %s: %v\n%s", name, err, log)
		}
		return string(b)
	}
	has := func(what, mbox string, tags ...string) {
		t.Helper()
		for _, tag := range tags {
			if strings.Count(mbox, "body of "+tag+"\r\n")+strings.Count(mbox, "body of "+tag+"\n") != 1 {
				t.Errorf("%s: the body of %s is not there once:\n%s", what, tag, mbox)
			}
		}
	}
	count := func(what string, want int) {
		t.Helper()
		if n := len(d.inbox(t, box)); n != want {
			t.Errorf("%s: %d messages in the mailbox, want %d", what, n, want)
		}
	}

	deliver("fm-1", "fm-2")
	// POP3 with STLS (sslproto auto requires it), keep.
	has("POP3 STLS keep", fetch("pop3-stls", "POP3", "pop3", `sslproto "auto" no sslcertck`, "keep"), "fm-1", "fm-2")
	count("after fetchmail --keep", 2)
	// POP3S, no keep: fetched and deleted.
	has("POP3S", fetch("pop3s", "POP3", "pop3s", "ssl no sslcertck", "no keep"), "fm-1", "fm-2")
	count("after fetchmail over POP3S", 0)

	deliver("fm-3")
	// IMAP with STARTTLS, keep: the message stays.
	has("IMAP STARTTLS keep", fetch("imap-stls", "IMAP", "imap", `sslproto "auto" no sslcertck`, "keep"), "fm-3")
	count("after fetchmail IMAP --keep", 1)
	// IMAPS, no keep: fetched, then flagged and expunged.
	has("IMAPS", fetch("imaps", "IMAP", "imaps", "ssl no sslcertck", "no keep"), "fm-3")
	count("after fetchmail over IMAPS", 0)
}
