package pop3d

import (
	"context"
	"encoding/json"
	"net"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// poplibScript runs POP3 methods of python3's poplib given as JSON and
// prints their results, or the errors they raised, as JSON.
const poplibScript = `
import json, poplib, ssl, sys
spec = json.loads(sys.argv[1])
ctx = ssl._create_unverified_context()  # the test certificate is self-signed
if spec["tls"]:
    p = poplib.POP3_SSL("127.0.0.1", spec["port"], context=ctx, timeout=10)
else:
    p = poplib.POP3("127.0.0.1", spec["port"], timeout=10)
def conv(x):
    if isinstance(x, bytes):
        return x.decode("latin-1")
    if isinstance(x, (list, tuple)):
        return [conv(y) for y in x]
    if isinstance(x, dict):
        return {conv(k): conv(v) for k, v in x.items()}
    return x
out = [{"ok": conv(p.getwelcome())}]
for act in spec["actions"]:
    name, args = act[0], act[1:]
    try:
        if name == "stls":
            r = p.stls(context=ctx)
        elif name == "close":  # drop the connection without QUIT
            p.close()
            r = None
        else:
            r = getattr(p, name)(*args)
        out.append({"ok": conv(r)})
    except Exception as e:
        out.append({"error": type(e).__name__ + ": " + str(e)})
print(json.dumps(out))
`

type pyResult struct {
	OK    json.RawMessage `json:"ok"`
	Error string          `json:"error"`
}

// str is the result as a string (a server response line).
func (r pyResult) str(t *testing.T) string {
	t.Helper()
	var s string
	if err := json.Unmarshal(r.OK, &s); err != nil {
		t.Fatalf("result %s (error %q) is not a string", r.OK, r.Error)
	}
	return s
}

// multi is a (response, lines, octets) result.
func (r pyResult) multi(t *testing.T) (resp string, lines []string) {
	t.Helper()
	var v []json.RawMessage
	if err := json.Unmarshal(r.OK, &v); err != nil || len(v) < 2 {
		t.Fatalf("result %s (error %q) is not a multi-line answer", r.OK, r.Error)
	}
	if err := json.Unmarshal(v[0], &resp); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(v[1], &lines); err != nil {
		t.Fatal(err)
	}
	return resp, lines
}

func runPoplib(t *testing.T, addr string, tls bool, actions ...[]any) []pyResult {
	t.Helper()
	_, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	spec, err := json.Marshal(map[string]any{"port": p, "tls": tls, "actions": actions})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "python3", "-c", poplibScript, string(spec)).CombinedOutput()
	if err != nil {
		t.Fatalf("python3 poplib: %v\n%s", err, out)
	}
	var res []pyResult
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("python3 output %q: %v", out, err)
	}
	if len(res) != len(actions)+1 {
		t.Fatalf("%d results for %d actions", len(res), len(actions))
	}
	return res
}

func act(name string, args ...any) []any { return append([]any{name}, args...) }

// lines splits a message as poplib returns it: lines without CRLF.
func lines(msg string) []string {
	return strings.Split(strings.TrimSuffix(msg, "\r\n"), "\r\n")
}

func TestPoplibUserPass(t *testing.T) {
	e := newEnv(t, envOptions{legacy: true})
	e.deliver("alice", msg1, msg2, msg3)
	snap := e.snapshot("alice")
	total := len(msg1) + len(msg2) + len(msg3)

	r := runPoplib(t, e.addr, false,
		act("user", alice), act("pass_", alicePassword), act("stat"), act("list"), act("uidl"),
		act("top", 1, 1), act("retr", 1), act("retr", 3), act("dele", 2), act("rset"), act("dele", 1),
		act("retr", 1), act("noop"), act("quit"))
	if g := r[0].str(t); !strings.HasPrefix(g, "+OK mail.example.org POP3 server ready") {
		t.Errorf("welcome %q", g)
	}
	if got := r[2].str(t); got != "+OK alice@example.org has 3 messages ("+strconv.Itoa(total)+" octets)" {
		t.Errorf("pass_: %q", got)
	}
	var stat []int
	if err := json.Unmarshal(r[3].OK, &stat); err != nil || !slices.Equal(stat, []int{3, total}) {
		t.Errorf("stat: %s, want [3 %d]", r[3].OK, total)
	}
	if _, l := r[4].multi(t); !slices.Equal(l, []string{"1 " + strconv.Itoa(len(msg1)), "2 " + strconv.Itoa(len(msg2)), "3 " + strconv.Itoa(len(msg3))}) {
		t.Errorf("list: %q", l)
	}
	if _, l := r[5].multi(t); !slices.Equal(l, []string{"1 " + snap.Messages[0].Key, "2 " + snap.Messages[1].Key, "3 " + snap.Messages[2].Key}) {
		t.Errorf("uidl: %q", l)
	}
	if _, l := r[6].multi(t); !slices.Equal(l, lines(msg1)[:5]) {
		t.Errorf("top 1 1: %q", l)
	}
	// poplib undoes the byte-stuffing: the lines are the message's.
	if resp, l := r[7].multi(t); !slices.Equal(l, lines(msg1)) || resp != "+OK "+strconv.Itoa(len(msg1))+" octets" {
		t.Errorf("retr 1: %q %q, want %q", resp, l, lines(msg1))
	}
	if _, l := r[8].multi(t); !slices.Equal(l, lines(msg3)) {
		t.Errorf("retr 3: %q", l)
	}
	if got := r[9].str(t); got != "+OK message 2 deleted" {
		t.Errorf("dele 2: %q", got)
	}
	if got := r[10].str(t); got != "+OK maildrop has 3 messages ("+strconv.Itoa(total)+" octets)" {
		t.Errorf("rset: %q", got)
	}
	if !strings.Contains(r[12].Error, "-ERR no such message") {
		t.Errorf("retr of a deleted message: %+v", r[12])
	}
	if got := r[14].str(t); got != "+OK mail.example.org POP3 server signing off (2 messages left)" {
		t.Errorf("quit: %q", got)
	}
	after := e.snapshot("alice")
	if len(after.Messages) != 2 || after.Messages[0].Key != snap.Messages[1].Key || after.Messages[1].Key != snap.Messages[2].Key {
		t.Fatalf("after QUIT the inbox holds %+v, want messages 2 and 3", after.Messages)
	}
}

func TestPoplibDropWithoutQuit(t *testing.T) {
	e := newEnv(t, envOptions{legacy: true})
	e.deliver("alice", msg1, msg2, msg3)
	r := runPoplib(t, e.addr, false,
		act("user", alice), act("pass_", alicePassword), act("dele", 1), act("dele", 2), act("stat"), act("close"))
	if string(r[5].OK) != "[1, "+strconv.Itoa(len(msg3))+"]" {
		t.Errorf("stat after DELE: %s", r[5].OK)
	}
	e.waitUnlocked()
	if n := len(e.snapshot("alice").Messages); n != 3 {
		t.Fatalf("a dropped session deleted messages: %d left, want 3", n)
	}
}

func TestPoplibRefusals(t *testing.T) {
	e := newEnv(t, envOptions{legacy: true})
	r := runPoplib(t, e.addr, false,
		act("apop", alice, alicePassword),
		act("user", alice), act("pass_", "wrong password"),
		act("user", alice), act("pass_", alicePassword), act("user", alice))
	if !strings.Contains(r[1].Error, "APOP not supported") {
		t.Errorf("apop: %+v", r[1])
	}
	if !strings.Contains(r[3].Error, "-ERR [AUTH] invalid login") {
		t.Errorf("bad password: %+v", r[3])
	}
	if got := r[5].str(t); got != "+OK alice@example.org has 0 messages (0 octets)" {
		t.Errorf("good password: %q", got)
	}
	if !strings.Contains(r[6].Error, "-ERR already authenticated") {
		t.Errorf("user after login: %+v", r[6])
	}
}

func TestPoplibSTLS(t *testing.T) {
	e := newEnv(t, envOptions{}) // legacy off: passwords need TLS
	e.deliver("alice", msg2)
	r := runPoplib(t, e.addr, false,
		act("capa"), act("user", alice), act("stls"), act("capa"),
		act("user", alice), act("pass_", alicePassword), act("retr", 1), act("quit"))
	var capa map[string][]string
	if err := json.Unmarshal(r[1].OK, &capa); err != nil {
		t.Fatal(err)
	}
	if _, ok := capa["STLS"]; !ok || capa["USER"] != nil || capa["SASL"] != nil {
		t.Errorf("capa before STLS: %v", capa)
	}
	if !strings.Contains(r[2].Error, "-ERR [AUTH]") || !strings.Contains(r[2].Error, "use STLS") {
		t.Errorf("user before STLS: %+v", r[2])
	}
	if got := r[3].str(t); got != "+OK begin TLS negotiation" {
		t.Errorf("stls: %q", got)
	}
	capa = nil
	if err := json.Unmarshal(r[4].OK, &capa); err != nil {
		t.Fatal(err)
	}
	if _, ok := capa["STLS"]; ok || !slices.Equal(capa["SASL"], []string{"PLAIN"}) {
		t.Errorf("capa after STLS: %v", capa)
	}
	if _, ok := capa["USER"]; !ok {
		t.Errorf("capa after STLS lacks USER: %v", capa)
	}
	if got := r[6].str(t); !strings.HasPrefix(got, "+OK alice@example.org has 1 messages") {
		t.Errorf("pass_ under TLS: %q", got)
	}
	if _, l := r[7].multi(t); !slices.Equal(l, lines(msg2)) {
		t.Errorf("retr: %q", l)
	}
}

func TestPoplibImplicitTLS(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.deliver("bob", msg1)
	key := e.snapshot("bob").Messages[0].Key
	r := runPoplib(t, e.tlsAddr, true,
		act("capa"), act("user", bob), act("pass_", bobPassword), act("uidl"), act("retr", 1), act("dele", 1), act("quit"))
	var capa map[string][]string
	if err := json.Unmarshal(r[1].OK, &capa); err != nil {
		t.Fatal(err)
	}
	if _, ok := capa["STLS"]; ok || !slices.Equal(capa["SASL"], []string{"PLAIN"}) {
		t.Errorf("capa on the TLS port: %v", capa)
	}
	if _, l := r[4].multi(t); !slices.Equal(l, []string{"1 " + key}) {
		t.Errorf("uidl: %q", l)
	}
	if _, l := r[5].multi(t); !slices.Equal(l, lines(msg1)) {
		t.Errorf("retr: %q", l)
	}
	if got := r[7].str(t); !strings.HasSuffix(got, "(0 messages left)") {
		t.Errorf("quit: %q", got)
	}
	if n := len(e.snapshot("bob").Messages); n != 0 {
		t.Fatalf("%d messages left after DELE and QUIT", n)
	}
}
