package dkimsign

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-msgauth/dkim"

	"mailfountain.dev/mailfountain/runtime/testenv"
)

// testKeys are made once: RSA generation takes a while under -race.
var testKeys = sync.OnceValues(func() (Keys, error) {
	dir, err := os.MkdirTemp("", "dkimsign-test")
	if err != nil {
		return Keys{}, err
	}
	defer os.RemoveAll(dir)
	return Ensure(dir, "example.com", day1)
})

func keysForTest(t testing.TB) (Keys, map[string]string) {
	t.Helper()
	k, err := testKeys()
	if err != nil {
		t.Fatal(err)
	}
	recs, err := k.Records()
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, r := range recs {
		m[r.Name] = r.Value()
	}
	return k, m
}

func lookupFrom(recs map[string]string) func(string) ([]string, error) {
	return func(name string) ([]string, error) {
		if v, ok := recs[strings.TrimSuffix(name, ".")]; ok {
			return []string{v}, nil
		}
		return nil, errors.New("no such record " + name)
	}
}

var messages = []struct {
	name, msg string
}{
	{"crlf", "From: Alice <alice@example.com>\r\nTo: bob@example.net\r\nSubject: hello\r\nDate: Fri, 04 Dec 2026 09:00:00 +0000\r\nMessage-ID: <1@example.com>\r\n\r\nHello Bob.\r\nSee you.\r\n"},
	{"lf", "From: Alice <alice@example.com>\nTo: bob@example.net\nSubject: hello\nDate: Fri, 04 Dec 2026 09:00:00 +0000\n\nHello Bob.\n\n\n"},
	{"8bit", "From: alice@example.com\r\nTo: bob@example.net\r\nSubject: =?utf-8?q?d=C3=A9j=C3=A0?=\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nD\xc3\xa9j\xc3\xa0 vu, \xe2\x82\xac 12.\r\nLatin-1 too: caf\xe9\r\n"},
	{"folded headers", "From: \"Alice, of the long name\"\r\n <alice@example.com>\r\nTo: bob@example.net,\r\n\tcarol@example.net,\r\n  dave@example.net\r\nSubject: a subject folded\r\n over   two lines\r\nReferences: <a@example.com>\r\n <b@example.com>\r\n\r\nBody   with  spaces \t \r\n"},
	{"lf folded", "From: alice@example.com\nSubject: folded\n\twith a tab\n\nbody\n"},
	{"empty body", "From: alice@example.com\r\nSubject: nothing\r\n\r\n"},
	{"no final line end", "From: alice@example.com\r\nSubject: cut\r\n\r\nlast line without CRLF"},
}

func signString(t *testing.T, msg string, k Keys) []byte {
	t.Helper()
	var out bytes.Buffer
	if err := Sign(&out, strings.NewReader(msg), k); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// goVerify checks the signatures with go-msgauth and returns the algorithms that verified.
func goVerify(t *testing.T, signed []byte, recs map[string]string) []string {
	t.Helper()
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(signed), &dkim.VerifyOptions{LookupTXT: lookupFrom(recs)})
	if err != nil {
		t.Fatal(err)
	}
	var ok []string
	for _, v := range vs {
		if v.Err == nil {
			ok = append(ok, v.Domain+"/"+v.HeaderKeys[0])
		} else {
			t.Logf("go-msgauth: %s: %v", v.Domain, v.Err)
		}
	}
	return ok
}

func TestSignVerifiesWithGoMsgauth(t *testing.T) {
	k, recs := keysForTest(t)
	for _, tc := range messages {
		t.Run(tc.name, func(t *testing.T) {
			signed := signString(t, tc.msg, k)
			if got := goVerify(t, signed, recs); len(got) != 2 {
				t.Errorf("%d of 2 signatures verify:\n%s", len(got), signed)
			}
			if bytes.Contains(bytes.ReplaceAll(signed, []byte("\r\n"), nil), []byte("\n")) {
				t.Errorf("a bare LF in the signed message:\n%q", signed)
			}
		})
	}
}

func TestSignatureFields(t *testing.T) {
	k, _ := keysForTest(t)
	sigs, err := Signatures(strings.NewReader(messages[0].msg), k)
	if err != nil {
		t.Fatal(err)
	}
	fields := strings.SplitAfter(strings.TrimSuffix(sigs, "\r\n"), "\r\nDKIM-Signature:")
	if len(fields) != 2 || !strings.HasPrefix(sigs, "DKIM-Signature:") || !strings.HasSuffix(sigs, "\r\n") {
		t.Fatalf("signature fields:\n%s", sigs)
	}
	for i, want := range []string{"a=ed25519-sha256", "a=rsa-sha256"} {
		tags := strings.Join(strings.Fields(fields[i]), "")
		for _, tag := range []string{want + ";", "c=relaxed/relaxed;", "d=example.com;", "s=" + []string{"mf20261204e", "mf20261204r"}[i] + ";",
			"h=From:From:To:Cc:Subject:Date:Message-ID:Reply-To:MIME-Version:Content-Type:Content-Transfer-Encoding:In-Reply-To:References;"} {
			if !strings.Contains(tags, tag) {
				t.Errorf("signature %d lacks %s:\n%s", i, tag, fields[i])
			}
		}
		if strings.Contains(tags, ";l=") {
			t.Errorf("signature %d has l=:\n%s", i, fields[i])
		}
	}
}

// A signature that cannot fail proves nothing: changes in transit break both.
func TestTamperingBreaksSignatures(t *testing.T) {
	k, recs := keysForTest(t)
	signed := string(signString(t, messages[0].msg, k))
	for _, tc := range []struct{ name, msg string }{
		{"body changed", strings.Replace(signed, "Hello Bob.", "Hello Eve.", 1)},
		{"line added to body", signed + "P.S.\r\n"},
		{"subject changed", strings.Replace(signed, "Subject: hello", "Subject: hullo", 1)},
		// on top: a verifier picks fields from the bottom, so only the
		// oversigned second From covers this one
		{"From added on top", "From: mallory@example.org\r\n" + signed},
		{"From added below", strings.Replace(signed, "To: bob", "From: mallory@example.org\r\nTo: bob", 1)},
		{"Cc added", strings.Replace(signed, "To: bob", "Cc: mallory@example.org\r\nTo: bob", 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := goVerify(t, []byte(tc.msg), recs); len(got) != 0 {
				t.Errorf("still verifies: %v", got)
			}
		})
	}
	t.Run("whitespace and LF only", func(t *testing.T) {
		// relaxed/relaxed: neither breaks them
		msg := strings.ReplaceAll(strings.Replace(signed, "Subject: hello", "Subject:   hello", 1), "\r\n", "\n")
		if got := goVerify(t, []byte(msg), recs); len(got) != 2 {
			t.Errorf("%d of 2 verify", len(got))
		}
	})
}

// pythonDKIM finds a python3 with Debian's python3-dkim and python3-nacl
// (ed25519): skipped when there is none, except under CI=true.
func pythonDKIM(t *testing.T) string {
	t.Helper()
	cands := []string{"/usr/bin/python3"}
	if p, err := exec.LookPath("python3"); err == nil {
		cands = append([]string{p}, cands...)
	}
	for _, p := range cands {
		if exec.Command(p, "-c", "import dkim, nacl").Run() == nil {
			return p
		}
	}
	testenv.Unavailable(t, "no python3 with the dkim and nacl modules (Debian: python3-dkim python3-nacl)")
	return ""
}

type pyResult struct {
	Idx int    `json:"idx"`
	A   string `json:"a"`
	S   string `json:"s"`
	OK  bool   `json:"ok"`
	Err string `json:"err"`
}

func pyVerify(t *testing.T, python string, signed []byte, recs map[string]string) []pyResult {
	t.Helper()
	recFile := filepath.Join(t.TempDir(), "records.json")
	data, _ := json.Marshal(recs)
	if err := os.WriteFile(recFile, data, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(python, "testdata/dkimverify.py", recFile)
	cmd.Stdin = bytes.NewReader(signed)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("dkimverify.py: %v\n%s", err, stderr.String())
	}
	var res []pyResult
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var r pyResult
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("dkimverify.py said %q: %v", sc.Text(), err)
		}
		res = append(res, r)
	}
	return res
}

// The independent verifier: dkimpy checks both signatures, fetching the
// keys from the published records.
func TestSignVerifiesWithDkimpy(t *testing.T) {
	python := pythonDKIM(t)
	k, recs := keysForTest(t)
	for _, tc := range messages {
		t.Run(tc.name, func(t *testing.T) {
			signed := signString(t, tc.msg, k)
			res := pyVerify(t, python, signed, recs)
			if len(res) != 2 {
				t.Fatalf("dkimpy saw %d signatures: %+v", len(res), res)
			}
			for i, want := range []struct{ a, s string }{{"ed25519-sha256", "mf20261204e"}, {"rsa-sha256", "mf20261204r"}} {
				if r := res[i]; r.A != want.a || r.S != want.s || !r.OK {
					t.Errorf("dkimpy: signature %d: %+v, want %s by %s verified", i, r, want.a, want.s)
				}
			}
		})
	}
	t.Run("tampered", func(t *testing.T) {
		signed := strings.Replace(string(signString(t, messages[0].msg, k)), "Hello Bob.", "Hello Eve.", 1)
		for _, r := range pyVerify(t, python, []byte(signed), recs) {
			if r.OK {
				t.Errorf("dkimpy verified a tampered message: %+v", r)
			}
		}
	})
}

// countingSeeker counts what Sign reads of its message.
type countingSeeker struct {
	io.ReadSeeker
	read, seeks int64
}

func (c *countingSeeker) Read(p []byte) (int, error) {
	n, err := c.ReadSeeker.Read(p)
	c.read += int64(n)
	return n, err
}

func (c *countingSeeker) Seek(off int64, whence int) (int64, error) {
	c.seeks++
	return c.ReadSeeker.Seek(off, whence)
}

// A large message on a spooled file: Sign reads it through twice (hash,
// then copy) instead of holding it, and both signatures hold.
func TestSignLargeSpooledMessage(t *testing.T) {
	k, recs := keysForTest(t)
	f, err := os.Create(filepath.Join(t.TempDir(), "spool"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	bw := bufio.NewWriter(f)
	bw.WriteString("From: alice@example.com\r\nTo: bob@example.net\r\nSubject: big\r\n\r\n")
	line := strings.Repeat("0123456789abcdef", 4) + "\r\n"
	for range (16 << 20) / len(line) {
		bw.WriteString(line)
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	size, _ := f.Seek(0, io.SeekCurrent)
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	cs := &countingSeeker{ReadSeeker: f}
	var out bytes.Buffer
	if err := Sign(&out, cs, k); err != nil {
		t.Fatal(err)
	}
	if cs.read != 2*size {
		t.Errorf("read %d bytes of a %d-byte message, want it read twice", cs.read, size)
	}
	if got := goVerify(t, out.Bytes(), recs); len(got) != 2 {
		t.Errorf("%d of 2 signatures verify", len(got))
	}
	if !bytes.HasSuffix(out.Bytes(), []byte(line)) || out.Len() <= int(size) {
		t.Errorf("signed message of %d bytes for %d", out.Len(), size)
	}
}

func TestSignRefuses(t *testing.T) {
	if err := Sign(io.Discard, strings.NewReader(messages[0].msg), Keys{}); err == nil {
		t.Error("Sign without keys succeeded")
	}
	k, _ := keysForTest(t)
	for _, msg := range []string{
		"no header end",
		"",
		// it would continue the last DKIM-Signature field (found by FuzzSign)
		" 0\n\n",
		"\tSubject: x\r\nFrom: a@example.com\r\n\r\nbody\r\n",
	} {
		if err := Sign(io.Discard, strings.NewReader(msg), k); err == nil {
			t.Errorf("%q was signed", msg)
		}
	}
}

func TestCRLFWriter(t *testing.T) {
	for _, tc := range []struct {
		pieces []string
		want   string
	}{
		{[]string{"a\nb\r\nc"}, "a\r\nb\r\nc"},
		{[]string{"a\r", "\nb\n"}, "a\r\nb\r\n"},
		{[]string{"\n", "\n"}, "\r\n\r\n"},
		{[]string{"a\r", "\n\nb"}, "a\r\n\r\nb"},
		{[]string{"a\r", "b\n"}, "a\rb\r\n"},
		{[]string{"", "x"}, "x"},
	} {
		var b bytes.Buffer
		cw := &crlfWriter{w: &b}
		for _, p := range tc.pieces {
			if n, err := cw.Write([]byte(p)); n != len(p) || err != nil {
				t.Fatalf("Write(%q) = %d, %v", p, n, err)
			}
		}
		if b.String() != tc.want {
			t.Errorf("%q: got %q, want %q", tc.pieces, b.String(), tc.want)
		}
	}
}
