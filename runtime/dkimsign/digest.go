package dkimsign

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"encoding"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"
	"time"
)

// digest reads a message once, in pieces, for both signatures: it keeps
// the header (up to maxHeader) and hashes the body in relaxed
// canonicalization (RFC 6376 section 3.4.4) with the one SHA-256 that
// both signatures share (ed25519-sha256 and rsa-sha256). The header is
// canonicalized and hashed per signature at the end (sign), as each
// signature hashes its own DKIM-Signature field last.
//
// Line ends are read as go-msgauth's verifier and the queue's sending
// read them: a bare LF is a CRLF, a bare CR stays a byte of its own.
type digest struct {
	header    []byte // the header's bytes, its blank line included once inBody
	lineStart int    // offset in header of the line being read
	inBody    bool
	tooLarge  bool // the header outgrew maxHeader: not kept, not signed

	body    hash.Hash // of the canonical body written so far
	spec    hash.Hash // body's state plus the pending line ends, once pend is long
	pend    []byte    // line ends not yet hashed: dropped if nothing follows
	wsp     bool      // white space seen since the last byte hashed
	prevCR  bool      // the last byte read was CR
	written bool      // something of the body was hashed
	out     []byte    // canonical bytes waiting for body.Write
}

// maxPend is how many pending line ends digest keeps in memory before it
// hashes them speculatively into a copy of the body's hash state: a body
// of blank lines costs no memory.
const maxPend = 4 << 10

func newDigest() *digest {
	return &digest{body: sha256.New(), out: make([]byte, 0, 4<<10)}
}

// Write reads the next piece of the message.
func (d *digest) Write(p []byte) (int, error) {
	n := len(p)
	if !d.inBody {
		p = d.readHeader(p)
	}
	if d.inBody && len(p) > 0 {
		d.canonBody(p)
	}
	return n, nil
}

// readHeader keeps the header's bytes up to its blank line ("\n" or
// "\r\n" on a line of its own, as textproto reads lines) and returns what
// follows it.
func (d *digest) readHeader(p []byte) []byte {
	for len(p) > 0 && !d.tooLarge {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			d.keep(p)
			return nil
		}
		d.keep(p[:i+1])
		p = p[i+1:]
		if d.tooLarge {
			return nil // not signed: its end does not matter
		}
		line := d.header[d.lineStart : len(d.header)-1]
		if len(line) == 0 || len(line) == 1 && line[0] == '\r' {
			d.inBody = true
			return p
		}
		d.lineStart = len(d.header)
	}
	return nil
}

func (d *digest) keep(b []byte) {
	if d.tooLarge {
		return
	}
	if len(d.header)+len(b) > maxHeader {
		d.tooLarge = true
		d.header = nil
		return
	}
	d.header = append(d.header, b...)
}

// canonBody hashes p in relaxed body canonicalization: white space runs
// become one space, white space at a line's end goes, and the line ends
// at the body's end go (hashed only once something follows them).
func (d *digest) canonBody(p []byte) {
	for i := 0; i < len(p); {
		switch p[i] {
		case ' ', '\t':
			d.wsp = true
			d.prevCR = false
			i++
			continue
		case '\r':
			d.wsp = false
			d.pending('\r')
			d.prevCR = true
			i++
			continue
		case '\n':
			d.wsp = false
			if !d.prevCR {
				d.pending('\r')
			}
			d.pending('\n')
			d.prevCR = false
			i++
			continue
		}
		// A run of other bytes goes as it is, after the pending line
		// ends and white space.
		j := i + 1
		for j < len(p) && p[j] != ' ' && p[j] != '\t' && p[j] != '\r' && p[j] != '\n' {
			j++
		}
		if len(d.pend) > 0 || d.spec != nil {
			d.flushPending()
		}
		if d.wsp {
			d.out = append(d.out, ' ')
			d.wsp = false
		}
		d.out = append(d.out, p[i:j]...)
		d.written = true
		d.prevCR = false
		if len(d.out) >= 4<<10 {
			d.body.Write(d.out)
			d.out = d.out[:0]
		}
		i = j
	}
	d.body.Write(d.out)
	d.out = d.out[:0]
}

func (d *digest) pending(c byte) {
	d.pend = append(d.pend, c)
	if len(d.pend) < maxPend {
		return
	}
	if d.spec == nil {
		d.body.Write(d.out)
		d.out = d.out[:0]
		d.spec = cloneHash(d.body)
	}
	d.spec.Write(d.pend)
	d.pend = d.pend[:0]
}

// flushPending hashes the pending line ends: something follows them.
func (d *digest) flushPending() {
	if d.spec != nil {
		d.body.Write(d.out)
		d.out = d.out[:0]
		d.body, d.spec = d.spec, nil
	}
	d.out = append(d.out, d.pend...)
	d.pend = d.pend[:0]
}

func cloneHash(h hash.Hash) hash.Hash {
	state, err := h.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		panic(err) // sha256's never fails
	}
	c := sha256.New()
	if err := c.(encoding.BinaryUnmarshaler).UnmarshalBinary(state); err != nil {
		panic(err)
	}
	return c
}

// bodyHash ends the body: a body with something in it ends in one CRLF,
// an empty one hashes nothing.
func (d *digest) bodyHash() []byte {
	if d.written {
		d.body.Write([]byte("\r\n"))
	}
	d.written = false
	return d.body.Sum(nil)
}

// fields splits the kept header into its fields as a verifier reads
// them: each line without its line end then CRLF, a line starting with
// white space continuing the field before it.
func (d *digest) fields() []string {
	var fs []string
	for rest := d.header; len(rest) > 0; {
		line, next, _ := bytes.Cut(rest, []byte("\n"))
		rest = next
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) == 0 {
			break // the blank line
		}
		if len(fs) > 0 && (line[0] == ' ' || line[0] == '\t') {
			fs[len(fs)-1] += string(line) + "\r\n"
		} else {
			fs = append(fs, string(line)+"\r\n")
		}
	}
	return fs
}

// relaxedHeader is a field in relaxed header canonicalization (RFC 6376
// section 3.4.2): the name in lower case, white space runs (line ends
// included) of the value made one space, none around the colon.
func relaxedHeader(f string) string {
	k, v, ok := strings.Cut(f, ":")
	k = strings.TrimSpace(strings.ToLower(k))
	if !ok {
		return k + ":\r\n"
	}
	v = strings.Join(strings.FieldsFunc(v, func(r rune) bool {
		return r == ' ' || r == '\t' || r == '\r' || r == '\n'
	}), " ")
	return k + ":" + v + "\r\n"
}

// sign returns the DKIM-Signature field (ending in CRLF) of key over the
// header fields fs (fields) and the body hash bh.
func sign(key Key, domain string, now time.Time, fs []string, bh []byte) (string, error) {
	var alg string
	opts := crypto.Hash(0) // ed25519 signs the header hash itself (RFC 8463)
	switch key.Algorithm {
	case Ed25519:
		alg = "ed25519-sha256"
	case RSA:
		alg = "rsa-sha256"
		opts = crypto.SHA256 // PKCS #1 v1.5 over the SHA-256 digest
	default:
		return "", fmt.Errorf("dkim sign with %s: unknown algorithm %q", key.Selector, key.Algorithm)
	}
	if key.Signer == nil {
		return "", errors.New("dkim sign: no keys")
	}
	var f strings.Builder
	f.WriteString("DKIM-Signature:")
	line := len(f.String())
	tag := func(t string) {
		if line+1+len(t) > 76 {
			f.WriteString("\r\n\t")
			line = 1
		} else {
			f.WriteByte(' ')
			line++
		}
		f.WriteString(t)
		line += len(t)
	}
	tag("v=1;")
	tag("a=" + alg + ";")
	tag("c=relaxed/relaxed;")
	tag("d=" + domain + ";")
	tag("s=" + key.Selector + ";")
	tag("t=" + strconv.FormatInt(now.Unix(), 10) + ";")
	tag("h=" + strings.Join(signedFields, ":") + ";")
	tag("bh=" + base64.StdEncoding.EncodeToString(bh) + ";")
	tag("b=")

	h := sha256.New()
	picked := map[string]int{}
	for _, name := range signedFields {
		// The n-th listing of a name signs its n-th field from the bottom;
		// one the message lacks is signed as absent: nothing is hashed.
		n := picked[name]
		picked[name]++
		for i := len(fs) - 1; i >= 0; i-- {
			k, _, _ := strings.Cut(fs[i], ":")
			if !strings.EqualFold(strings.TrimSpace(k), name) {
				continue
			}
			if n == 0 {
				h.Write([]byte(relaxedHeader(fs[i])))
				break
			}
			n--
		}
	}
	h.Write([]byte(strings.TrimSuffix(relaxedHeader(f.String()), "\r\n")))
	sig, err := key.Signer.Sign(rand.Reader, h.Sum(nil), opts)
	if err != nil {
		return "", fmt.Errorf("dkim sign with %s: %w", key.Selector, err)
	}
	b := base64.StdEncoding.EncodeToString(sig)
	// The signature folded: verifiers drop the white space in b=.
	for len(b) > 0 {
		if line >= 76 {
			f.WriteString("\r\n\t")
			line = 1
		}
		n := min(len(b), 76-line)
		f.WriteString(b[:n])
		line += n
		b = b[n:]
	}
	f.WriteString("\r\n")
	return f.String(), nil
}

// signatures returns the two DKIM-Signature fields (ed25519, then RSA)
// of a message digest d read whole.
func (d *digest) signatures(k Keys, now time.Time) (string, error) {
	if k.Ed25519.Signer == nil || k.RSA.Signer == nil {
		return "", errors.New("dkim sign: no keys")
	}
	fs := d.fields()
	bh := d.bodyHash()
	var out string
	for _, key := range []Key{k.Ed25519, k.RSA} {
		s, err := sign(key, k.Domain, now, fs, bh)
		if err != nil {
			return "", err
		}
		out += s
	}
	return out, nil
}
