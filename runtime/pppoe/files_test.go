package pppoe

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailfountain.dev/mailfountain/runtime/testenv"
)

// hostile are credentials that would break a naive file: white space,
// quotes, the comment sign, escapes, newlines that would start an option
// of their own, bytes outside ASCII, the longest pppd takes.
var hostile = []struct{ name, s string }{
	{"plain", "fti/abc123@orange.fr"},
	{"spaces", "my secret  pass "},
	{"double quote", `pa"ss`},
	{"quote injection", `x" mfinjected "y`},
	{"single quote", `it's`},
	{"hash", "#notacomment"},
	{"hash inside", "pa#ss"},
	{"backslash end", `pass\`},
	{"backslash escapes", `\n\t\040\x41\\`},
	{"newline option", "pass\nmfinjected"},
	{"newline quote option", "pass\"\nmfinjected\n\""},
	{"carriage return", "a\rb"},
	{"tab", "a\tb"},
	{"digits after escape", "\"123"},
	{"control", "\x01\x1b[31m\x7f"},
	{"utf-8", "mötdepässe€"},
	{"latin-1 bytes", "\xe9\xff"},
	{"longest", strings.Repeat("\\\"#", maxPassword/3)},
}

// pppdWords splits text into words as pppd 2.4.9's options.c getword
// does (quotes, backslash escapes, \ooo and \xhh, # comments), written
// from its source for these tests: the real pppd checks the same below.
func pppdWords(text string) []string {
	i := 0
	getc := func() int {
		if i >= len(text) {
			i++
			return -1
		}
		c := int(text[i])
		i++
		return c
	}
	isspace := func(c int) bool { return c == ' ' || (c >= '\t' && c <= '\r') }
	isoctal := func(c int) bool { return c >= '0' && c < '8' }
	isxdigit := func(c int) bool {
		return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
	}
	var words []string
	for {
		escape, comment, quoted := false, false, 0
		var w []byte
		c := getc()
		for ; c != -1; c = getc() {
			if c == '\n' {
				if !escape {
					comment = false
				} else {
					escape = false
				}
				continue
			}
			if comment {
				continue
			}
			if escape {
				break
			}
			if c == '\\' {
				escape = true
				continue
			}
			if c == '#' {
				comment = true
				continue
			}
			if !isspace(c) {
				break
			}
		}
		for c != -1 {
			if escape {
				escape = false
				if c == '\n' {
					c = getc()
					continue
				}
				got := false
				var v int
				switch c {
				case 'a':
					v = '\a'
				case 'b':
					v = '\b'
				case 'f':
					v = '\f'
				case 'n':
					v = '\n'
				case 'r':
					v = '\r'
				case 's':
					v = ' '
				case 't':
					v = '\t'
				default:
					switch {
					case isoctal(c):
						for n := 0; n < 3 && isoctal(c); n++ {
							v = v<<3 + c&7
							c = getc()
						}
						got = true
					case c == 'x':
						c = getc()
						for n := 0; n < 2 && isxdigit(c); n++ {
							d := int(strings.ToUpper(string(rune(c)))[0]) - '0'
							if d > 10 {
								d += '0' + 10 - 'A'
							}
							v = v<<4 + d
							c = getc()
						}
						got = true
					default:
						v = c
					}
				}
				w = append(w, byte(v))
				if !got {
					c = getc()
				}
				continue
			}
			if c == '\\' {
				escape = true
				c = getc()
				continue
			}
			if quoted != 0 {
				if c == quoted {
					quoted = 0
					c = getc()
					continue
				}
			} else if c == '"' || c == '\'' {
				quoted = c
				c = getc()
				continue
			} else if isspace(c) || c == '#' {
				i-- // ungetc
				break
			}
			w = append(w, byte(c))
			c = getc()
		}
		if c == -1 && len(w) == 0 {
			return words
		}
		words = append(words, string(w))
	}
}

// TestWord: each hostile string is one word of pppd's files, read back
// as it was.
func TestWord(t *testing.T) {
	for _, h := range hostile {
		t.Run(h.name, func(t *testing.T) {
			w := word(h.s)
			if strings.ContainsAny(w, "\n\r") {
				t.Errorf("word(%q) = %q spans lines", h.s, w)
			}
			got := pppdWords("password " + w + "\nnoauth\n")
			if len(got) != 3 || got[0] != "password" || got[1] != h.s || got[2] != "noauth" {
				t.Errorf("word(%q) = %s, read back as %q", h.s, w, got)
			}
		})
	}
}

func FuzzWord(f *testing.F) {
	for _, h := range hostile {
		f.Add(h.s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if strings.ContainsRune(s, 0) || s == "" {
			return
		}
		got := pppdWords("user " + word(s) + " # c\nnoauth")
		if len(got) != 3 || got[1] != s || got[2] != "noauth" {
			t.Fatalf("word(%q) = %s, read back as %q", s, word(s), got)
		}
	})
}

// TestWordRealPPPD: the real pppd reads each hostile word back as it was.
// pppd echoes an option's bad numeric value in its error, so a word given
// to lcp-echo-interval comes back from pppd's own parser, byte for byte.
func TestWordRealPPPD(t *testing.T) {
	pppd := testenv.NeedTool(t, "pppd")
	dir := t.TempDir()
	for _, h := range hostile {
		t.Run(h.name, func(t *testing.T) {
			s := "x" + h.s // not a number
			f := filepath.Join(dir, "probe")
			if err := os.WriteFile(f, []byte("lcp-echo-interval "+word(s)+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			out, code := runPPPD(t, pppd, "file", f)
			want := "invalid numeric parameter '" + s + "' for lcp-echo-interval option"
			if code != 2 || !bytes.Contains(out, []byte(want)) {
				t.Errorf("pppd exited %d, said %q; want status 2 and %q", code, out, want)
			}
		})
	}
}

// runPPPD runs the real pppd with args, notty and dryrun: it parses its
// options and exits, before any device or the network (here at its check
// for the kernel's PPP, status 4).
func runPPPD(t *testing.T, pppd string, args ...string) ([]byte, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, pppd, append(args, "notty", "dryrun")...)
	cmd.Stdin = nil
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return out, ee.ExitCode()
	}
	if err != nil {
		t.Fatalf("run pppd: %v", err)
	}
	return out, 0
}

// TestFilesRealPPPD: the real pppd takes the options and secrets files
// rendered for hostile credentials, and nothing in them becomes an option
// of its own: pppd stops at the kernel's missing PPP (4), or, on a kernel
// with PPP, after its dry run (0); never at an option (2). The plugin and
// device are on the command line: the plugin stops pppd at once on a
// kernel without PPPoE, so they are left out here.
func TestFilesRealPPPD(t *testing.T) {
	pppd := testenv.NeedTool(t, "pppd")
	if os.Geteuid() != 0 {
		testenv.Unavailable(t, "pppd takes privileged options (noauth) only from root")
	}
	for _, h := range hostile {
		t.Run(h.name, func(t *testing.T) {
			cfg := Config{Interface: "wan", Username: h.s, Password: h.s, Dir: t.TempDir()}.withDefaults()
			if err := writeFiles(cfg, render(cfg, h.s)); err != nil {
				t.Fatal(err)
			}
			a := args(cfg)
			if a[0] != "plugin" || a[2] != "nic-wan" {
				t.Fatalf("args %q: want plugin and device first", a)
			}
			out, code := runPPPD(t, pppd, a[3:]...)
			if code != 4 && code != 0 {
				t.Errorf("pppd exited %d: %s", code, out)
			}
		})
	}
	// And the check can fail: a password written without escapes gives
	// pppd an option of its own.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "secrets"), []byte("password \"x\" mfinjected \"y\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, code := runPPPD(t, pppd, "file", filepath.Join(dir, "secrets")); code != 2 || !bytes.Contains(out, []byte("unrecognized option 'mfinjected'")) {
		t.Errorf("an injected option: pppd exited %d, said %q; want 2, unrecognized option", code, out)
	}
}

// TestRender: what pppd is told, and where the secret is not.
func TestRender(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Interface: "eth0", Username: "fti/u1@isp", Password: "s3cret pass", Dir: dir}.withDefaults()
	f := render(cfg, "s3cret pass")
	opts := string(f.options)
	lines := map[string]bool{}
	for _, l := range strings.Split(opts, "\n") {
		lines[l] = true
	}
	for _, want := range []string{
		`user "fti/u1@isp"`, "noauth", "hide-password", "noipdefault", "defaultroute",
		"replacedefaultroute", "usepeerdns", "nodetach", "ifname ppp0", "mtu 1492", "mru 1492",
		"lcp-echo-interval 15", "lcp-echo-failure 4",
		"ip-up-script " + word(filepath.Join(dir, "ip-up")),
		"ip-down-script " + word(filepath.Join(dir, "ip-down")),
	} {
		if !lines[want] {
			t.Errorf("options lack %q:\n%s", want, opts)
		}
	}
	for _, not := range []string{"persist", "s3cret", "\npassword"} {
		if strings.Contains(opts, not) {
			t.Errorf("options hold %q:\n%s", not, opts)
		}
	}
	if got := pppdWords(string(f.secrets)); len(got) != 2 || got[0] != "password" || got[1] != "s3cret pass" {
		t.Errorf("secrets read as %q", got)
	}
	wantArgs := []string{"plugin", "rp-pppoe.so", "nic-eth0", "file", filepath.Join(dir, "options"), "file", filepath.Join(dir, "secrets")}
	if got := args(cfg); strings.Join(got, "\x00") != strings.Join(wantArgs, "\x00") {
		t.Errorf("args %q, want %q", got, wantArgs)
	}

	if err := writeFiles(cfg, f); err != nil {
		t.Fatal(err)
	}
	for name, perm := range map[string]os.FileMode{"secrets": 0o600, "options": 0o600, "ip-up": 0o700, "ip-down": 0o700} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != perm {
			t.Errorf("%s: mode %v, want %v", name, fi.Mode().Perm(), perm)
		}
	}
	// Nothing else left in the directory (no temporary file).
	ents, _ := os.ReadDir(dir)
	if len(ents) != 4 {
		t.Errorf("directory holds %d entries, want 4", len(ents))
	}
}

// TestScriptPath: the scripts append to the events file even when the
// data directory's name needs quoting in sh.
func TestScriptPath(t *testing.T) {
	sh := testenv.NeedTool(t, "sh")
	dir := filepath.Join(t.TempDir(), "data dir's $HOME `x`")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	s := script("up", "test", filepath.Join(dir, eventsFile))
	p := filepath.Join(dir, "ip-up")
	if err := os.WriteFile(p, s, 0o700); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(sh, p, "ppp0", "wan", "0", "198.51.100.7", "198.51.100.1")
	cmd.Env = []string{"PPPD_PID=42", "DNS1=192.0.2.53"}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	b, err := os.ReadFile(filepath.Join(dir, eventsFile))
	if err != nil {
		t.Fatal(err)
	}
	want := "up pid=42 ifname=ppp0 local=198.51.100.7 remote=198.51.100.1 dns1=192.0.2.53 dns2=\n"
	if string(b) != want {
		t.Errorf("events %q, want %q", b, want)
	}
}

func TestValidate(t *testing.T) {
	ok := Config{Interface: "wan", Username: "u", Password: "p", Dir: "/var/lib/mf/pppoe"}
	tests := []struct {
		name string
		edit func(*Config)
		bad  bool
	}{
		{"ok", func(*Config) {}, false},
		{"password file", func(c *Config) { c.Password, c.PasswordFile = "", "/etc/mf/ppp.pass" }, false},
		{"no username", func(c *Config) { c.Username = "" }, true},
		{"NUL username", func(c *Config) { c.Username = "a\x00b" }, true},
		{"long username", func(c *Config) { c.Username = strings.Repeat("u", 256) }, true},
		{"longest username", func(c *Config) { c.Username = strings.Repeat("u", 255) }, false},
		{"NUL password", func(c *Config) { c.Password = "\x00" }, true},
		{"long password", func(c *Config) { c.Password = strings.Repeat("p", 256) }, true},
		{"no password", func(c *Config) { c.Password = "" }, true},
		{"no interface", func(c *Config) { c.Interface = "" }, true},
		{"interface too long", func(c *Config) { c.Interface = "eth0123456789012" }, true},
		{"interface with space", func(c *Config) { c.Interface = "eth 0" }, true},
		{"interface with slash", func(c *Config) { c.Interface = "../x" }, true},
		{"relative dir", func(c *Config) { c.Dir = "pppoe" }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.edit(&c)
			if err := c.Validate(); (err != nil) != tt.bad {
				t.Errorf("Validate() = %v, want error %v", err, tt.bad)
			}
		})
	}
}

func TestPasswordFile(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		content string
		want    string
		bad     bool
	}{
		{"s3cret\n", "s3cret", false},
		{"s3cret", "s3cret", false},
		{"s3cret\r\n", "s3cret", false},
		{"with space #x\nsecond line\n", "with space #x", false},
		{"\n", "", true},
		{"", "", true},
		{"a\x00b\n", "", true},
		{strings.Repeat("p", 256) + "\n", "", true},
	}
	for i, tt := range tests {
		p := filepath.Join(dir, "pass")
		if err := os.WriteFile(p, []byte(tt.content), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := Config{PasswordFile: p}.password()
		if (err != nil) != tt.bad || got != tt.want {
			t.Errorf("%d: password of %q = %q, %v; want %q, error %v", i, tt.content, got, err, tt.want, tt.bad)
		}
	}
	if _, err := (Config{PasswordFile: filepath.Join(dir, "missing")}).password(); err == nil {
		t.Error("a missing password file: no error")
	}
}
