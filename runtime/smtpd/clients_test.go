package smtpd

import (
	"context"
	"encoding/json"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"mailfountain.dev/mailfountain/runtime/testenv"
)

// pythonScript drives python3's smtplib through the scenarios of
// TestPythonSmtplib and prints one JSON object of results.
const pythonScript = `
import json, smtplib, ssl, sys, base64
host = "127.0.0.1"
mx, sub, subs = (int(p) for p in sys.argv[1:4])
alice_pw, dave_pw = sys.argv[4:6]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE

def message(scenario, sender="py@remote.test"):
    return "From: %s\r\nSubject: smtplib %s\r\n\r\nHello from Python.\r\n" % (sender, scenario)

def code(f):
    try:
        r = f()
        if isinstance(r, tuple):
            return r[0]
        return 250 if not r else r
    except smtplib.SMTPRecipientsRefused as e:
        return list(e.recipients.values())[0][0]
    except smtplib.SMTPResponseException as e:
        return e.smtp_code

def run_mx():
    out, msg = {}, message("mx")
    s = smtplib.SMTP(host, mx, local_hostname="py.test", timeout=10)
    s.ehlo()
    out["auth"] = s.has_extn("auth")
    out["size"] = s.esmtp_features.get("size", "")
    out["alice"] = code(lambda: s.sendmail("py@remote.test", ["Alice@Example.test"], msg))
    out["unknown"] = code(lambda: s.sendmail("py@remote.test", ["nobody@example.test"], msg))
    out["relay"] = code(lambda: s.sendmail("py@remote.test", ["someone@remote.test"], msg))
    out["mailing"] = code(lambda: s.sendmail("py@remote.test", ["news@example.test"], msg))
    s.quit()
    return out

def run_starttls(mech):
    out, msg = {}, message(mech, "Alice <alice@example.test>")
    s = smtplib.SMTP(host, sub, local_hostname="py.test", timeout=10)
    s.ehlo()
    out["auth_in_clear"] = s.has_extn("auth")
    out["auth_without_tls"] = s.docmd("AUTH", "PLAIN " + base64.b64encode(b"\0alice@example.test\0x").decode())[0]
    out["mail_without_auth"] = code(lambda: s.sendmail("alice@example.test", ["bob@example.test"], msg))
    s.starttls(context=ctx)
    s.ehlo()
    out["auth_under_tls"] = s.esmtp_features.get("auth", "").strip()
    s.user, s.password = "alice@example.test", "wrong"
    out["wrong_password"] = code(lambda: s.auth(mech.upper(), getattr(s, "auth_" + mech)))
    s.user, s.password = "alice@example.test", alice_pw
    out["login"] = code(lambda: s.auth(mech.upper(), getattr(s, "auth_" + mech)))
    out["not_owned"] = code(lambda: s.sendmail("bob@example.test", ["carol@example.test"], msg))
    out["remote"] = code(lambda: s.sendmail("alice@example.test", ["someone@remote.test"], msg))
    out["send"] = code(lambda: s.sendmail("boss@example.test", ["bob@example.test"], msg))
    s.quit()
    return out

def run_ssl():
    out = {}
    s = smtplib.SMTP_SSL(host, subs, local_hostname="py.test", context=ctx, timeout=10)
    out["login"] = code(lambda: s.login("dave@other.test", dave_pw))
    out["send"] = code(lambda: s.sendmail("dave@other.test", ["bob@example.test"], message("ssl", "dave@other.test")))
    s.quit()
    return out

print(json.dumps({"mx": run_mx(), "plain": run_starttls("plain"), "login": run_starttls("login"), "ssl": run_ssl()}))
`

func port(t *testing.T, addr string) string {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPythonSmtplib(t *testing.T) {
	t.Parallel()
	testenv.NeedTool(t, "python3")
	e := newEnv(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "python3", "-c", pythonScript,
		port(t, e.mx), port(t, e.sub), port(t, e.subs), alicePassword, davePassword).CombinedOutput()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
	var got map[string]map[string]any
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
	check := func(scenario string, want map[string]any) {
		t.Helper()
		for k, w := range want {
			if got[scenario][k] != w {
				t.Errorf("%s: %s = %v, want %v (all: %v)", scenario, k, got[scenario][k], w, got[scenario])
			}
		}
	}
	check("mx", map[string]any{
		"auth": false, "size": "26214400", "alice": 250.0, "unknown": 550.0, "relay": 554.0, "mailing": 451.0,
	})
	for _, mech := range []string{"plain", "login"} {
		check(mech, map[string]any{
			"auth_in_clear": false, "auth_without_tls": 538.0, "mail_without_auth": 530.0,
			"auth_under_tls": "PLAIN LOGIN", "wrong_password": 535.0, "login": 235.0,
			"not_owned": 553.0, "remote": 451.0, "send": 250.0,
		})
	}
	check("ssl", map[string]any{"login": 235.0, "send": 250.0})
	e.wantMailbox("example.test", "alice", 1)
	bob := e.wantMailbox("example.test", "bob", 3)
	for _, m := range bob {
		_, rec, _ := trace(t, m)
		if rec[0] != "py.test" || rec[4] != "ESMTPSA" {
			t.Errorf("Received of a submitted message: %q", rec)
		}
	}
}

func TestSwaks(t *testing.T) {
	t.Parallel()
	testenv.NeedTool(t, "swaks")
	e := newEnv(t, nil)
	swaks := func(wantOK bool, args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		args = append([]string{"--server", "127.0.0.1", "--helo", "swaks.test", "--timeout", "10", "--hide-informational"}, args...)
		out, err := exec.CommandContext(ctx, "swaks", args...).CombinedOutput()
		if (err == nil) != wantOK {
			t.Fatalf("swaks %q: %v, want success %v\n%s", args, err, wantOK, out)
		}
		return string(out)
	}
	want := func(out string, lines ...string) {
		t.Helper()
		for _, l := range lines {
			if !strings.Contains(out, l) {
				t.Errorf("swaks output lacks %q:\n%s", l, out)
			}
		}
	}
	mx := port(t, e.mx)
	want(swaks(true, "--port", mx, "--from", "swaks@remote.test", "--to", "carol@example.test"), "<-  250 2.0.0 OK id=")
	want(swaks(false, "--port", mx, "--from", "swaks@remote.test", "--to", "victim@remote.test"), "<** 554 5.7.1 Relay access denied")
	want(swaks(false, "--port", mx, "--from", "swaks@remote.test", "--to", "nobody@example.test"), "<** 550 5.1.1")
	want(swaks(true, "--port", mx, "--tls", "--from", "swaks@remote.test", "--to", "CAROL@example.test"), "<~  250 2.0.0 OK id=")

	sub := port(t, e.sub)
	want(swaks(false, "--port", sub, "--from", "alice@example.test", "--to", "victim@remote.test"), "<** 530 5.7.0 Authentication required")
	want(swaks(false, "--port", sub, "--auth", "PLAIN", "--auth-user", "alice@example.test", "--auth-password", alicePassword,
		"--from", "alice@example.test", "--to", "carol@example.test"), "Host did not advertise authentication")
	want(swaks(true, "--port", sub, "--tls", "--auth", "PLAIN", "--auth-user", "alice@example.test", "--auth-password", alicePassword,
		"--from", "alice@example.test", "--to", "carol@example.test"), "<~  235 2.0.0", "<~  250 2.0.0 OK id=")
	want(swaks(false, "--port", sub, "--tls", "--auth", "LOGIN", "--auth-user", "alice@example.test", "--auth-password", "wrong",
		"--from", "alice@example.test", "--to", "carol@example.test"), "<~* 535 5.7.8")
	want(swaks(true, "--port", port(t, e.subs), "--tlsc", "--auth", "LOGIN", "--auth-user", "bob@example.test", "--auth-password", bobPassword,
		"--from", "sales@example.test", "--to", "carol@example.test"), "<~  235 2.0.0", "<~  250 2.0.0 OK id=")
	e.wantMailbox("example.test", "carol", 4)
}
