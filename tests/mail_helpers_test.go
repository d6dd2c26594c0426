package tests

// Helpers of the end-to-end mail tests (mail_*_test.go): a mailfountaind
// serving the manual's company on loopback, the python3 client driver,
// a plain Go SMTP client, and readers of the Maildirs on disk.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"text/template"
	"time"

	"mailfountain.dev/mailfountain/runtime/testenv"
)

const (
	domain = "ma-societe.fr"
	// The demonstration passwords of examples/ma-societe.yaml.
	renePassword     = "rene-demo"
	andrePassword    = "andre-demo"
	charlinePassword = "charline-demo"
	thomasPassword   = "thomas-demo"
	// The hash of renePassword in the example.
	reneHash = "$argon2id$v=19$m=65536,t=3,p=4$w7SaUgLiUs4nVZDRcH7ydA$9Y9rPOArSeBubm1gKioK29kLMYrY1BZwtj1YQVcPmu4"
)

// addr is the full address of a local part of the company's domain.
func addr(local string) string { return local + "@" + domain }

// needTool returns the path of a command the test needs. Without it the
// test is skipped, except in CI (CI=true), which must prove every tool
// works: there a missing tool fails the test.
func needTool(t *testing.T, name string) string {
	t.Helper()
	return testenv.NeedTool(t, name)
}

// stateOpts fill testdata/mail/ma-societe.yaml.tmpl.
type stateOpts struct {
	LegacyPlainAuth  bool
	RenePasswordHash string // reneHash if empty
	Extra            []extraAccount
	MaxMessageMB     int // smtp.max_message_mb; the default if 0
	// Mail out (outbound_*_test.go); unset, the document has none of it.
	Mode         string        // smtp.mode; "direct" if empty
	Relay        *relayOpts    // smtp.relay
	Queue        *queueOpts    // smtp.queue
	Redirections []redirection // more redirections of the domain
	Domains      []extraDomain // more domains
}

// extraDomain is another domain of the box.
type extraDomain struct {
	Name, Language string
	Accounts       []extraAccount
}

// relayOpts are smtp.relay's fields.
type relayOpts struct {
	Host               string
	Port               int
	Username, Password string
}

// queueOpts are smtp.queue's fields, CUE durations ("1s", "5d"; "0" for
// no delay warning); an empty one is left to its default.
type queueOpts struct{ MinBackoff, MaxBackoff, Lifetime, DelayWarning string }

// redirection is a redirection of the domain: a local part to addresses.
type redirection struct {
	Address string
	To      []string
}

type extraAccount struct{ ID, PasswordHash string }

func stateYAML(t *testing.T, o stateOpts) string {
	t.Helper()
	if o.RenePasswordHash == "" {
		o.RenePasswordHash = reneHash
	}
	src, err := os.ReadFile(filepath.Join("testdata", "mail", "ma-societe.yaml.tmpl"))
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := template.New("state").Option("missingkey=error").Parse(string(src))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := tmpl.Execute(&b, o); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// mailDaemon is a mailfountaind serving the company on loopback ports.
type mailDaemon struct {
	dir, data, state string
	servers          []string
	args             []string // more flags of mailfountaind
	env              []string // more environment variables of mailfountaind
	proc             *daemonProc
	addrs            map[string]string // server flag → host:port of the running process
}

// startMail writes the state document (mode 0600), starts mailfountaind
// with servers (their flags: "smtp", "pop3s"...) on loopback ports of its
// choice, and waits until they serve the applied state.
func startMail(t *testing.T, o stateOpts, servers ...string) *mailDaemon {
	t.Helper()
	return startMailWith(t, o, nil, nil, servers...)
}

// startMailWith is startMail with more flags and environment variables
// of mailfountaind, kept for its restarts.
func startMailWith(t *testing.T, o stateOpts, args, env []string, servers ...string) *mailDaemon {
	t.Helper()
	dir := t.TempDir()
	m := &mailDaemon{dir: dir, data: filepath.Join(dir, "data"), state: filepath.Join(dir, "state.yaml"), servers: servers, args: args, env: env}
	if err := os.WriteFile(m.state, []byte(stateYAML(t, o)), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := mfapply(t, "", "validate", "-f", m.state); code != 0 {
		t.Fatalf("mfapply validate -f %s: exit %d\n%s%s", m.state, code, out, errOut)
	}
	m.start(t)
	waitVersions(t, m.data, 1)
	return m
}

var listeningRE = regexp.MustCompile(`msg=listening server=(\w+) addr=(\S+)`)

// start runs mailfountaind on m's data directory; the ports are new ones.
func (m *mailDaemon) start(t *testing.T) {
	t.Helper()
	args := []string{"--data", m.data, "-f", m.state}
	for _, s := range m.servers {
		args = append(args, "--"+s, "127.0.0.1:0")
	}
	args = append(args, m.args...)
	m.proc = startDaemonProcEnv(t, m.env, args...)
	m.addrs = map[string]string{}
	p := m.proc
	waitFor(t, "the mail servers to start", func() error {
		if !p.running() {
			t.Fatalf("mailfountaind exited: %v\n%s", p.err, p.stderr)
		}
		log := p.stderr.String()
		for _, s := range m.servers {
			if !regexp.MustCompile(`msg=started .*component=` + s + `( |\n)`).MatchString(log) {
				return fmt.Errorf("%s not started", s)
			}
		}
		for _, l := range listeningRE.FindAllStringSubmatch(log, -1) {
			m.addrs[l[1]] = l[2]
		}
		return nil
	})
	for _, s := range m.servers {
		if m.addrs[s] == "" {
			t.Fatalf("no listening address logged for %s:\n%s", s, p.stderr)
		}
	}
}

// stop stops mailfountaind with SIGTERM and checks it exits cleanly.
func (m *mailDaemon) stop(t *testing.T) {
	t.Helper()
	if err := m.proc.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := m.proc.waitExit(t, 10*time.Second); code != 0 {
		t.Fatalf("mailfountaind exit code %d after SIGTERM, want 0:\n%s", code, m.proc.stderr)
	}
}

// kill kills mailfountaind (SIGKILL) and waits until it is gone.
func (m *mailDaemon) kill(t *testing.T) {
	t.Helper()
	if err := m.proc.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	m.proc.waitExit(t, 10*time.Second)
}

func (m *mailDaemon) addr(server string) string { return m.addrs[server] }

func (m *mailDaemon) port(t *testing.T, server string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(m.addrs[server])
	if err != nil {
		t.Fatalf("address of %s: %v", server, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// mailbox is the Maildir root of an account.
func (m *mailDaemon) mailbox(id string) string {
	return filepath.Join(m.data, "mail", domain, id)
}

// setState saves a new state document by rename and waits until the
// daemon has applied it as version n.
func (m *mailDaemon) setState(t *testing.T, o stateOpts, n int) {
	t.Helper()
	saveByRename(t, m.state, stateYAML(t, o))
	waitVersions(t, m.data, n)
}

// stored is a message file of a Maildir.
type stored struct {
	path string
	data []byte
}

// header returns the first value of a header field of the message.
func (s stored) header(name string) string {
	head, _, _ := bytes.Cut(s.data, []byte("\r\n\r\n"))
	for _, l := range strings.Split(string(head), "\r\n") {
		k, v, ok := strings.Cut(l, ":")
		if ok && strings.EqualFold(k, name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// folderMessages returns the messages of a folder ("" for the inbox,
// else a Maildir++ folder name such as "Archives"), sorted by file name.
func folderMessages(t *testing.T, root, folder string) []stored {
	t.Helper()
	dir := root
	if folder != "" {
		dir = filepath.Join(root, "."+strings.ReplaceAll(folder, "/", "."))
	}
	var out []stored
	for _, sub := range []string{"new", "cur"} {
		es, err := os.ReadDir(filepath.Join(dir, sub))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			if !e.Type().IsRegular() {
				continue
			}
			p := filepath.Join(dir, sub, e.Name())
			b, err := os.ReadFile(p)
			if errors.Is(err, os.ErrNotExist) {
				continue // moved from new to cur meanwhile
			}
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, stored{p, b})
		}
	}
	slices.SortFunc(out, func(a, b stored) int { return strings.Compare(filepath.Base(a.path), filepath.Base(b.path)) })
	return out
}

// inbox returns the messages of an account's inbox.
func (m *mailDaemon) inbox(t *testing.T, id string) []stored {
	t.Helper()
	return folderMessages(t, m.mailbox(id), "")
}

// withHeader returns the messages whose header name has value v.
func withHeader(ms []stored, name, v string) []stored {
	var out []stored
	for _, s := range ms {
		if s.header(name) == v {
			out = append(out, s)
		}
	}
	return out
}

// message is an RFC 5322 message with CRLF line ends, as SMTP carries it;
// its Subject and Message-ID are derived from tag.
func message(from, to, tag, body string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\nMessage-ID: <%s@test.example>\r\n", from, to, tag, tag)
	b.WriteString("Date: Mon, 02 Jan 2006 15:04:05 +0100\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n")
	b.WriteString(strings.ReplaceAll(strings.TrimSuffix(body, "\n"), "\n", "\r\n"))
	b.WriteString("\r\n")
	return b.String()
}

// sendMX sends one message over plain SMTP with Go's net/smtp, as another
// mail server would (no TLS: the box's certificate is self-signed).
func sendMX(t *testing.T, address, from string, to []string, msg string) {
	t.Helper()
	if err := sendPlain(address, from, to, msg); err != nil {
		t.Fatalf("send to %v through %s: %v", to, address, err)
	}
}

func sendPlain(address, from string, to []string, msg string) error {
	conn, err := net.DialTimeout("tcp", address, 10*time.Second)
	if err != nil {
		return err
	}
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	c, err := smtp.NewClient(conn, "127.0.0.1")
	if err != nil {
		conn.Close()
		return err
	}
	defer c.Close()
	if err := c.Hello("sender.test.example"); err != nil {
		return err
	}
	if err := transaction(c, from, to, msg); err != nil {
		return err
	}
	return c.Quit()
}

// transaction sends one message over c, ready for MAIL, up to the answer
// to its final dot.
func transaction(c *smtp.Client, from string, to []string, msg string) error {
	if err := c.Mail(from); err != nil {
		return fmt.Errorf("MAIL FROM:<%s>: %w", from, err)
	}
	for _, r := range to {
		if err := c.Rcpt(r); err != nil {
			return fmt.Errorf("RCPT TO:<%s>: %w", r, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	if _, err := io.WriteString(w, msg); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("end of DATA: %w", err)
	}
	return nil
}

// py is a python3 process running testdata/mail/driver.py: python's own
// smtplib, poplib and imaplib, one operation at a time.
type py struct {
	t      *testing.T
	cmd    *exec.Cmd
	in     io.WriteCloser
	out    *bufio.Reader
	stderr *testenv.Buffer
	ports  map[string]int // server flag → port, for connect
}

// pyOp is one operation of driver.py.
type pyOp map[string]any

// pyResult is driver.py's answer to one operation.
type pyResult struct {
	OK    bool            `json:"ok"`
	Value json.RawMessage `json:"value"`
	Error string          `json:"error"`
	Msg   string          `json:"msg"`
	Code  int             `json:"code"`
}

func (r pyResult) String() string {
	if r.OK {
		return "ok " + string(r.Value)
	}
	return fmt.Sprintf("%s: %s", r.Error, r.Msg)
}

// reply is an smtplib (code, message) result.
func (r pyResult) reply() (int, string) {
	var v []any
	if !r.OK || json.Unmarshal(r.Value, &v) != nil || len(v) != 2 {
		return 0, r.String()
	}
	code, _ := v[0].(float64)
	msg, _ := v[1].(string)
	return int(code), msg
}

// str is a string result (poplib and imaplib responses).
func (r pyResult) str() string {
	var s string
	json.Unmarshal(r.Value, &s)
	return s
}

// imap is an imaplib (typ, data) result, its data items as strings (a
// literal's item is its [prefix, literal] pair joined by a space).
func (r pyResult) imap() (string, []string) {
	var v []json.RawMessage
	if !r.OK || json.Unmarshal(r.Value, &v) != nil || len(v) != 2 {
		return "", []string{r.String()}
	}
	var typ string
	json.Unmarshal(v[0], &typ)
	var items []json.RawMessage
	json.Unmarshal(v[1], &items)
	var out []string
	for _, it := range items {
		var s string
		if json.Unmarshal(it, &s) == nil {
			out = append(out, s)
			continue
		}
		var pair []string
		if json.Unmarshal(it, &pair) == nil {
			out = append(out, strings.Join(pair, " "))
			continue
		}
		out = append(out, "") // None
	}
	return typ, out
}

// lines is a poplib (response, lines, octets) result.
func (r pyResult) lines() (string, []string) {
	var v []json.RawMessage
	if !r.OK || json.Unmarshal(r.Value, &v) != nil || len(v) < 2 {
		return r.String(), nil
	}
	var resp string
	var ls []string
	json.Unmarshal(v[0], &resp)
	json.Unmarshal(v[1], &ls)
	return resp, ls
}

// startPy starts the driver, its connections aimed at d's servers. Tests
// that use it call needTool(t, "python3") first, before starting a daemon.
func startPy(t *testing.T, d *mailDaemon) *py {
	t.Helper()
	python := needTool(t, "python3")
	script, err := os.ReadFile(filepath.Join("testdata", "mail", "driver.py"))
	if err != nil {
		t.Fatal(err)
	}
	p := &py{t: t, stderr: &testenv.Buffer{}}
	p.cmd = exec.Command(python, "-c", string(script))
	p.cmd.Stderr = p.stderr
	if p.in, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.out = bufio.NewReader(out)
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.in.Close()
		done := make(chan struct{})
		go func() { p.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			p.cmd.Process.Kill()
			<-done
		}
	})
	// The interpreter's start, apart from the first operation's time.
	if r := p.do(pyOp{"op": "ping"}); !r.OK {
		t.Fatalf("python driver: %s\n%s", r, p.stderr)
	}
	p.use(d)
	return p
}

// use points connect at the servers of d (after a restart: new ports).
func (p *py) use(d *mailDaemon) {
	p.ports = map[string]int{}
	for s := range d.addrs {
		p.ports[s] = d.port(p.t, s)
	}
}

func (p *py) do(op pyOp) pyResult {
	p.t.Helper()
	b, _ := json.Marshal(op)
	start := time.Now()
	defer func() {
		if d := time.Since(start); d > time.Second {
			p.t.Logf("python driver: %s took %s", b, d.Round(time.Millisecond))
		}
	}()
	if _, err := p.in.Write(append(b, '\n')); err != nil {
		p.t.Fatalf("python driver: %v\n%s", err, p.stderr)
	}
	line, err := p.out.ReadBytes('\n')
	if err != nil {
		p.t.Fatalf("python driver, %s: %v\n%s", b, err, p.stderr)
	}
	var r pyResult
	if err := json.Unmarshal(line, &r); err != nil {
		p.t.Fatalf("python driver, %s: %v: %s", b, err, line)
	}
	return r
}

// serverProto is the protocol and implicit TLS of a server flag.
func serverProto(server string) (proto string, implicitTLS bool) {
	switch server {
	case "smtp", "submission":
		return "smtp", false
	case "submissions":
		return "smtp", true
	case "pop3":
		return "pop3", false
	case "pop3s":
		return "pop3", true
	case "imap":
		return "imap", false
	case "imaps":
		return "imap", true
	}
	panic("unknown server " + server)
}

// connect opens connection c to a server (its flag name) and fails the
// test if it cannot.
func (p *py) connect(c, server string) pyResult {
	p.t.Helper()
	proto, tls := serverProto(server)
	r := p.do(pyOp{"op": "connect", "c": c, "proto": proto, "tls": tls, "port": p.ports[server]})
	if !r.OK {
		p.t.Fatalf("connect %s to %s: %s", c, server, r)
	}
	return r
}

// call calls a method of connection c's client object.
func (p *py) call(c, method string, args ...any) pyResult {
	p.t.Helper()
	if args == nil {
		args = []any{}
	}
	return p.do(pyOp{"op": "call", "c": c, "method": method, "args": args})
}

// must is call, failing the test unless the call succeeds (for imaplib:
// returns OK).
func (p *py) must(c, method string, args ...any) pyResult {
	p.t.Helper()
	r := p.call(c, method, args...)
	if !r.OK {
		p.t.Fatalf("%s.%s%v: %s", c, method, args, r)
	}
	if typ, data := r.imap(); typ != "" && typ != "OK" {
		p.t.Fatalf("%s.%s%v: %s %v", c, method, args, typ, data)
	}
	return r
}

func (p *py) starttls(c string) pyResult {
	p.t.Helper()
	return p.do(pyOp{"op": "starttls", "c": c})
}

// smtpAuth runs SMTP AUTH with a given mechanism.
func (p *py) smtpAuth(c, mech, user, password string) pyResult {
	p.t.Helper()
	return p.do(pyOp{"op": "auth", "c": c, "mech": mech, "user": user, "password": password})
}

// drop closes connection c without QUIT or LOGOUT.
func (p *py) drop(c string) {
	p.t.Helper()
	if r := p.do(pyOp{"op": "close", "c": c}); !r.OK {
		p.t.Fatalf("close %s: %s", c, r)
	}
}

// popLogin opens connection c to a POP3 server and logs in with USER/PASS
// (after STLS on the plain port).
func (p *py) popLogin(c, server, user, password string) {
	p.t.Helper()
	p.connect(c, server)
	if server == "pop3" {
		if r := p.starttls(c); !r.OK {
			p.t.Fatalf("%s: STLS: %s", c, r)
		}
	}
	if r := p.call(c, "user", user); !r.OK {
		p.t.Fatalf("%s: USER %s: %s", c, user, r)
	}
	if r := p.call(c, "pass_", password); !r.OK {
		p.t.Fatalf("%s: PASS for %s: %s", c, user, r)
	}
}

// imapLogin opens connection c to an IMAP server and logs in (after
// STARTTLS on the plain port).
func (p *py) imapLogin(c, server, user, password string) {
	p.t.Helper()
	p.connect(c, server)
	if server == "imap" {
		if r := p.starttls(c); !r.OK {
			p.t.Fatalf("%s: STARTTLS: %s", c, r)
		}
	}
	p.must(c, "login", user, password)
}

// mfapply runs mfapply with args and returns its exit code and outputs.
func mfapply(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	mfapply := bin(t, "mfapply") // built first: the build is not the command's time
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, mfapply, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("mfapply %v: %v", args, err)
	}
	return code, stdout.String(), stderr.String()
}

// passwordHash makes a password hash with `mfapply passwd`, the way an
// admin scripts it: the password on standard input.
func passwordHash(t *testing.T, password string) string {
	t.Helper()
	code, out, errOut := mfapply(t, password+"\n", "passwd")
	if code != 0 {
		t.Fatalf("mfapply passwd: exit %d: %s", code, errOut)
	}
	h := strings.TrimSpace(out)
	if !strings.HasPrefix(h, "$argon2id$") {
		t.Fatalf("mfapply passwd printed %q, want an argon2id hash", out)
	}
	return h
}

// attr reads an attribute of connection c's client object.
func (p *py) attr(c, name string) pyResult {
	p.t.Helper()
	return p.do(pyOp{"op": "attr", "c": c, "name": name})
}

// untagged returns and clears the untagged responses imaplib collected on
// connection c, by name (EXISTS, EXPUNGE...).
func (p *py) untagged(c string) map[string][]string {
	p.t.Helper()
	r := p.do(pyOp{"op": "untagged", "c": c})
	if !r.OK {
		p.t.Fatalf("untagged responses of %s: %s", c, r)
	}
	var raw map[string][]json.RawMessage
	json.Unmarshal(r.Value, &raw)
	out := map[string][]string{}
	for k, vs := range raw {
		for _, v := range vs {
			var s string
			json.Unmarshal(v, &s)
			out[k] = append(out[k], s)
		}
	}
	return out
}

// imapFetch is one message of an imaplib FETCH result: the text of its
// response and its literals.
type imapFetch struct {
	seq      int
	text     string
	literals []string
}

var fetchStartRE = regexp.MustCompile(`^(\d+) \(`)

// fetches groups the data of an imaplib fetch (or uid fetch) result by
// message: an item "N (..." starts a message; a literal comes as a
// [prefix, literal] pair, the rest of the response as the next string.
func (r pyResult) fetches(t *testing.T) []imapFetch {
	t.Helper()
	var v []json.RawMessage
	if !r.OK || json.Unmarshal(r.Value, &v) != nil || len(v) != 2 {
		t.Fatalf("fetch: %s", r)
	}
	var typ string
	json.Unmarshal(v[0], &typ)
	if typ != "OK" {
		t.Fatalf("fetch: %s", r.Value)
	}
	var items []json.RawMessage
	json.Unmarshal(v[1], &items)
	var out []imapFetch
	for _, it := range items {
		var s string
		var pair []string
		switch {
		case json.Unmarshal(it, &s) == nil:
		case json.Unmarshal(it, &pair) == nil && len(pair) == 2:
			s = pair[0]
		default:
			continue // None: no data
		}
		if m := fetchStartRE.FindStringSubmatch(s); m != nil {
			n, _ := strconv.Atoi(m[1])
			out = append(out, imapFetch{seq: n})
		}
		if len(out) == 0 {
			t.Fatalf("fetch data does not start with a message: %s", r.Value)
		}
		f := &out[len(out)-1]
		f.text += s
		if pair != nil {
			f.literals = append(f.literals, pair[1])
		}
	}
	return out
}

var (
	uidRE   = regexp.MustCompile(`\bUID (\d+)`)
	flagsRE = regexp.MustCompile(`\bFLAGS \(([^)]*)\)`)
	sizeRE  = regexp.MustCompile(`\bRFC822\.SIZE (\d+)`)
	subjRE  = regexp.MustCompile(`(?m)^Subject: (\S+)`)
)

func (f imapFetch) uid() int {
	m := uidRE.FindStringSubmatch(f.text)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

func (f imapFetch) flags() []string {
	m := flagsRE.FindStringSubmatch(f.text)
	if m == nil {
		return nil
	}
	return strings.Fields(m[1])
}

func (f imapFetch) size() int {
	m := sizeRE.FindStringSubmatch(f.text)
	if m == nil {
		return -1
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// subject is the Subject of the first literal holding one.
func (f imapFetch) subject() string {
	for _, l := range f.literals {
		if m := subjRE.FindStringSubmatch(l); m != nil {
			return m[1]
		}
	}
	return ""
}

// logout ends IMAP connection c with LOGOUT (imaplib answers BYE).
func (p *py) logout(c string) {
	p.t.Helper()
	if typ, data := p.call(c, "logout").imap(); typ != "BYE" {
		p.t.Errorf("%s: LOGOUT: %s %v, want BYE", c, typ, data)
	}
}
