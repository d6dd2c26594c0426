package srs

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"

	"mailfountain.dev/mailfountain/runtime/testenv"
)

// reference is another implementation of the format, run as a program:
// forward and reverse return one line per address, "!" and a reason for
// an address it refused.
type reference struct {
	forward func(t *testing.T, secret, alias string, senders []string) []string
	reverse func(t *testing.T, secret string, addrs []string) []string
}

// needReference skips the test when a reference implementation is not
// installed, except in CI (CI=true), where every test must run.
func needReference(t *testing.T, what, pkg string, err error) {
	t.Helper()
	testenv.Unavailable(t, "%s is not installed (Debian package %s), the interoperability test is skipped: %v", what, pkg, err)
}

// mailSRS is Mail::SRS 0.31, Shevek's original implementation, through
// its command-line client srs(1).
func mailSRS(t *testing.T) reference {
	path, err := exec.LookPath("srs")
	if err == nil {
		// Another program called srs would not know these options.
		err = exec.Command(path, "--secret=x", "--reverse", "nobody@example.org").Run()
		if _, isExit := err.(*exec.ExitError); isExit {
			err = nil // refused, as it must: the program is Mail::SRS's
		}
	}
	if err != nil {
		needReference(t, "srs(1) of Mail::SRS", "srs", err)
	}
	run := func(args ...string) (string, error) {
		out, err := exec.Command(path, args...).Output()
		return strings.TrimSuffix(string(out), "\n"), err
	}
	return reference{
		forward: func(t *testing.T, secret, alias string, senders []string) []string {
			out, err := run(append([]string{"--secret=" + secret, "--alias=" + alias, "--forward"}, senders...)...)
			if err != nil {
				t.Fatalf("srs --forward: %v", err)
			}
			return strings.Split(out, "\n")
		},
		reverse: func(t *testing.T, secret string, addrs []string) []string {
			var res []string
			for _, a := range addrs { // srs stops at the first address it refuses
				out, err := run("--secret="+secret, "--reverse", a)
				if err != nil {
					out = "!" + err.Error()
				}
				res = append(res, out)
			}
			return res
		},
	}
}

const pySRS = `
import sys, SRS
op, secret, alias = sys.argv[1:4]
srs = SRS.new(secret=secret)
for a in sys.argv[4:]:
    try:
        print(srs.forward(a, alias) if op == "forward" else srs.reverse(a))
    except Exception as e:
        print("!" + type(e).__name__)
`

// pysrs is the Python port of Mail::SRS (Debian's python3-srs).
func pysrs(t *testing.T) reference {
	var python string
	var err error
	// The module is Debian's, so Debian's python3 has it even where
	// another python3 comes first in PATH.
	for _, p := range []string{"python3", "/usr/bin/python3"} {
		if err = exec.Command(p, "-c", "import SRS").Run(); err == nil {
			python = p
			break
		}
	}
	if python == "" {
		needReference(t, "python3's SRS module (pysrs)", "python3-srs", err)
	}
	run := func(t *testing.T, op, secret, alias string, addrs []string) []string {
		cmd := exec.Command(python, append([]string{"-c", pySRS, op, secret, alias}, addrs...)...)
		cmd.Env = append(os.Environ(), "PYTHONIOENCODING=utf-8")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("pysrs %s: %v: %s", op, err, stderr.Bytes())
		}
		return strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	}
	return reference{
		forward: func(t *testing.T, secret, alias string, senders []string) []string {
			return run(t, "forward", secret, alias, senders)
		},
		reverse: func(t *testing.T, secret string, addrs []string) []string {
			return run(t, "reverse", secret, "-", addrs)
		},
	}
}

// TestInterop checks, against the implementations of the format installed
// on the machine, that each reverses the other's addresses to the same
// sender, and that on the same day both write the same address.
func TestInterop(t *testing.T) {
	const secret, domain = "interop secret", "fwd.example"
	senders := []string{
		"user@orig.example",
		"First.Last+tag@Orig.Example",
		"a=b==c@orig.example",
		"Ünï.çödé@orig.example", // non-ASCII is hashed as bytes, not case-folded
		"x@[192.0.2.1]",
		"SRS0=HHHH=TT=orig.example=user@fwd0.example",
		"SRS1=HHHH=fwd0.example==HHHH=TT=orig.example=user@fwd1.example",
	}
	for name, ref := range map[string]func(*testing.T) reference{"Mail::SRS": mailSRS, "pysrs": pysrs} {
		t.Run(name, func(t *testing.T) {
			ref := ref(t)
			r, err := New(Config{Secrets: [][]byte{[]byte(secret)}, Domain: domain})
			if err != nil {
				t.Fatal(err)
			}
			var ours, want []string
			for _, s := range senders {
				fwd, err := r.Forward(s)
				if err != nil {
					t.Fatal(err)
				}
				back, err := r.Reverse(fwd)
				if err != nil {
					t.Fatal(err)
				}
				ours, want = append(ours, fwd), append(want, back)
			}
			theirs := ref.forward(t, secret, domain, senders)
			if len(theirs) != len(senders) {
				t.Fatalf("reference forward: %q", theirs)
			}
			theirsBack := ref.reverse(t, secret, ours)
			theirsFolded := ref.reverse(t, secret, lowerAll(ours))
			for i, s := range senders {
				// The same address on the same day (the timestamp is the
				// second field of SRS0; an SRS1 has none).
				if field(ours[i], 2) == field(theirs[i], 2) && ours[i] != theirs[i] {
					t.Errorf("%q: ours %q, theirs %q", s, ours[i], theirs[i])
				}
				if got, err := r.Reverse(theirs[i]); err != nil || got != want[i] {
					t.Errorf("Reverse(their %q) = %q, %v; want %q", theirs[i], got, err, want[i])
				}
				if got, err := r.Reverse(asciiLower(theirs[i])); err != nil || !strings.EqualFold(got, want[i]) {
					t.Errorf("Reverse(their %q lowercased) = %q, %v", theirs[i], got, err)
				}
				if theirsBack[i] != want[i] {
					t.Errorf("they reverse our %q to %q, want %q", ours[i], theirsBack[i], want[i])
				}
				if !strings.EqualFold(theirsFolded[i], want[i]) {
					t.Errorf("they reverse our %q lowercased to %q", ours[i], theirsFolded[i])
				}
			}
			// The reference refuses what it must: a forged hash, another secret.
			forged := strings.Replace(ours[0], "=orig.example=", "=evil.example=", 1)
			for _, got := range append(ref.reverse(t, secret, []string{forged}), ref.reverse(t, "other", ours[:1])...) {
				if !strings.HasPrefix(got, "!") {
					t.Errorf("the reference accepted a forged address: %q", got)
				}
			}
		})
	}
}

func lowerAll(addrs []string) []string {
	var out []string
	for _, a := range addrs {
		out = append(out, asciiLower(a))
	}
	return out
}

// field is the i-th '='-separated field of an address's local part.
func field(addr string, i int) string {
	if f := strings.Split(addr, "="); i < len(f) {
		return f[i]
	}
	return ""
}
