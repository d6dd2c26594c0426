package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMailMbsync: mbsync (isync), which keeps a local Maildir in step with
// the IMAP mailbox, over IMAPS with the box's self-signed certificate
// trusted, on 127.0.0.1: it fetches the messages and the folders; the
// flags set and the message deleted locally reach the box's Maildir, a
// draft written locally is uploaded, and a message arriving later is
// fetched.
func TestMailMbsync(t *testing.T) {
	t.Parallel()
	mbsync := needTool(t, "mbsync")
	d := startMail(t, stateOpts{}, "smtp", "imaps")
	const box = "andre.mouve"
	deliver := func(tag string) {
		sendMX(t, d.addr("smtp"), "bob@sender.example", []string{addr(box)},
			message("bob@sender.example", addr(box), tag, "body of "+tag+"\n"))
	}
	deliver("mb-1")
	deliver("mb-2")

	home := t.TempDir()
	local := filepath.Join(home, "mail")
	if err := os.Mkdir(local, 0o700); err != nil {
		t.Fatal(err)
	}
	// SSLType is isync 1.4's name (1.5 also takes it).
	conf := fmt.Sprintf(`IMAPAccount box
Host 127.0.0.1
Port %d
User %s
Pass %s
SSLType IMAPS
CertificateFile %s

IMAPStore box-remote
Account box

MaildirStore box-local
Path %s/
Inbox %s/INBOX
SubFolders Verbatim

Channel box
Far :box-remote:
Near :box-local:
Patterns *
Create Both
Expunge Both
SyncState *
`, d.port(t, "imaps"), addr(box), andrePassword, filepath.Join(d.data, "tls", "self-signed.crt"), local, local)
	rc := filepath.Join(home, "mbsyncrc")
	if err := os.WriteFile(rc, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "HOME="+home)
	sync := func(what string) {
		t.Helper()
		if code, out := runTool(t, env, mbsync, "-c", rc, "box"); code != 0 {
			t.Fatalf("mbsync (%s): exit %d\n%s", what, code, out)
		}
	}
	// localFile is the path of the local copy of the message tagged tag
	// (mbsync writes LF line ends).
	localFile := func(tag string) string {
		t.Helper()
		for _, f := range folderMessages(t, filepath.Join(local, "INBOX"), "") {
			if strings.Contains(string(f.data), "\nSubject: "+tag+"\n") {
				return f.path
			}
		}
		t.Fatalf("no local copy of %s", tag)
		return ""
	}
	// serverInfo is the flags part of the name of the box's file of tag,
	// "" if there is none.
	serverInfo := func(folder, tag string) (string, bool) {
		for _, f := range folderMessages(t, d.mailbox(box), folder) {
			if f.header("Subject") == tag {
				_, info, _ := strings.Cut(filepath.Base(f.path), ":2,")
				return info, true
			}
		}
		return "", false
	}

	sync("first")
	for _, folder := range []string{"INBOX", "Drafts", "Sent", "Trash", "Junk"} {
		if _, err := os.Stat(filepath.Join(local, folder, "cur")); err != nil {
			t.Errorf("folder %s not made locally: %v", folder, err)
		}
	}
	// Locally: mb-1 read and flagged, mb-2 deleted; a draft written.
	one := localFile("mb-1")
	base, _, _ := strings.Cut(filepath.Base(one), ":2,")
	if err := os.Rename(one, filepath.Join(local, "INBOX", "cur", base+":2,FS")); err != nil {
		t.Fatal(err)
	}
	two := localFile("mb-2")
	base, _, _ = strings.Cut(filepath.Base(two), ":2,")
	if err := os.Rename(two, filepath.Join(local, "INBOX", "cur", base+":2,T")); err != nil {
		t.Fatal(err)
	}
	draft := "From: " + addr(box) + "\r\nSubject: mb-draft\r\n\r\ndraft body\r\n"
	if err := os.WriteFile(filepath.Join(local, "Drafts", "cur", "1.local.test:2,D"), []byte(draft), 0o600); err != nil {
		t.Fatal(err)
	}
	deliver("mb-3")
	sync("second")

	if info, ok := serverInfo("", "mb-1"); info != "FS" {
		t.Errorf("mb-1 in the box: flags %q (there: %v), want FS", info, ok)
	}
	if _, ok := serverInfo("", "mb-2"); ok {
		t.Errorf("mb-2, deleted locally, is still in the box")
	}
	if info, ok := serverInfo("Drafts", "mb-draft"); info != "D" {
		t.Errorf("the local draft in the box's Drafts: flags %q (there: %v), want D", info, ok)
	}
	if b, err := os.ReadFile(localFile("mb-3")); err != nil || !strings.Contains(string(b), "body of mb-3") {
		t.Errorf("mb-3, delivered later, not fetched whole: %v\n%s", err, b)
	}
}

// TestMailCurl: curl's SMTP, IMAP and POP3, with the box's self-signed
// certificate trusted, on 127.0.0.1: a message sent over submission with
// STARTTLS and over SMTPS (and one with another account's From, refused
// with a reply curl shows), read back over IMAPS, IMAP with STARTTLS,
// POP3S and POP3 with STLS; no login in clear.
func TestMailCurl(t *testing.T) {
	t.Parallel()
	curl := needTool(t, "curl")
	d := startMail(t, stateOpts{}, "submission", "submissions", "imap", "imaps", "pop3", "pop3s")
	ca := filepath.Join(d.data, "tls", "self-signed.crt")
	run := func(args ...string) (int, string) {
		t.Helper()
		return runTool(t, nil, curl, append([]string{"-sS", "-v", "--max-time", "30", "--cacert", ca}, args...)...)
	}
	url := func(scheme, server, path string) string {
		return fmt.Sprintf("%s://%s/%s", scheme, d.addr(server), path)
	}
	home := t.TempDir()
	send := func(scheme, server, from, tag string) (int, string) {
		t.Helper()
		msg := filepath.Join(home, tag+".eml")
		if err := os.WriteFile(msg, []byte(message(from, addr("thomas.petit"), tag, "body of "+tag+"\n")), 0o600); err != nil {
			t.Fatal(err)
		}
		return run("--ssl-reqd", "--url", url(scheme, server, ""), "--user", addr("charline.durand")+":"+charlinePassword,
			"--mail-from", addr("charline.durand"), "--mail-rcpt", addr("thomas.petit"), "--upload-file", msg)
	}
	if code, out := send("smtp", "submission", addr("charline.durand"), "curl-587"); code != 0 {
		t.Errorf("send over submission STARTTLS: exit %d\n%s", code, out)
	}
	if code, out := send("smtps", "submissions", addr("contact"), "curl-465"); code != 0 {
		t.Errorf("send over SMTPS with an alias's From: exit %d\n%s", code, out)
	}
	if code, out := send("smtps", "submissions", addr("rene.ricard"), "curl-other"); code == 0 || !strings.Contains(out, "< 550 5.7.1") {
		t.Errorf("send with another account's From: exit %d, want an error and the 550 5.7.1 shown\n%s", code, out)
	}

	user := addr("thomas.petit") + ":" + thomasPassword
	for _, r := range []struct {
		name string
		args []string
		want []string
	}{
		{"IMAPS SEARCH", []string{"--url", url("imaps", "imaps", "INBOX?SUBJECT%20curl-")}, []string{"* SEARCH 1 2"}},
		{"IMAP STARTTLS FETCH", []string{"--ssl-reqd", "--url", url("imap", "imap", "INBOX;UID=2")}, []string{"body of curl-465"}},
		{"POP3S LIST", []string{"--url", url("pop3s", "pop3s", "")}, []string{"1 ", "2 "}},
		{"POP3 STLS RETR", []string{"--ssl-reqd", "--url", url("pop3", "pop3", "1")}, []string{"body of curl-587"}},
	} {
		code, out := run(append(r.args, "--user", user)...)
		if code != 0 {
			t.Errorf("%s: exit %d\n%s", r.name, code, out)
			continue
		}
		for _, w := range r.want {
			if !strings.Contains(out, w) {
				t.Errorf("%s: no %q in\n%s", r.name, w, out)
			}
		}
		if strings.Contains(out, "curl-other") {
			t.Errorf("%s: the refused message is there\n%s", r.name, out)
		}
	}
	// Without TLS the servers refuse the login.
	for _, u := range []string{url("imap", "imap", "INBOX"), url("pop3", "pop3", "")} {
		if code, out := run("--url", u, "--user", user); code == 0 {
			t.Errorf("%s without TLS: exit 0, want a refused login\n%s", u, out)
		}
	}
}
