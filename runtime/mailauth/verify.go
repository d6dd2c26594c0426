// Package mailauth checks the SPF (RFC 7208), DKIM (RFC 6376) and DMARC
// (RFC 7489) of arriving mail and writes the Authentication-Results field
// (RFC 8601) the SMTP server prepends. It only records results: what to do
// with a failing message is not its business.
//
// Every DNS query goes through Resolver (miekg/dns), which keeps answers
// for their TTL in a bounded cache, negative ones per RFC 2308, failures
// never; it serves outbound delivery (smtpout, mtasts) too. DKIM
// signatures are checked by go-msgauth; SPF is evaluated here (go-msgauth
// has none); DMARC records are parsed by go-msgauth and evaluated here.
// The organisational domain of DMARC is the public suffix plus one label,
// from golang.org/x/net/publicsuffix.
//
// Apart from the Resolver's DNS cache, nothing is kept between calls:
// any number of SMTP sessions call Verify at once.
package mailauth

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/emersion/go-msgauth/authres"
	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-msgauth/dmarc"
	"golang.org/x/net/publicsuffix"
)

// DefaultTimeout bounds one Verify call.
const DefaultTimeout = 10 * time.Second

// maxDKIMSignatures bounds the signatures checked per message: each costs
// a key lookup and a body hash.
const maxDKIMSignatures = 5

// Verifier checks arriving messages. It is safe for concurrent use.
type Verifier struct {
	r       *Resolver
	log     *slog.Logger
	timeout time.Duration
}

// NewVerifier returns a verifier asking r (nil means NewResolver(nil, 0)).
// A nil logger discards. Each Verify call is bounded by DefaultTimeout, or
// by timeout when it is positive.
func NewVerifier(r *Resolver, timeout time.Duration, logger *slog.Logger) *Verifier {
	if r == nil {
		r = NewResolver(nil, 0)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	return &Verifier{r: r, log: logger, timeout: timeout}
}

// Input is what the SMTP session knows of a message.
type Input struct {
	// AuthservID names this server in the results: the box's host name
	// of the moment (mailconf Settings.Hostname).
	AuthservID string
	// RemoteIP is the SMTP client's address.
	RemoteIP netip.Addr
	// HELO is the EHLO/HELO argument.
	HELO string
	// MailFrom is the MAIL FROM address without angle brackets; empty for
	// the null reverse-path, when SPF checks the HELO name instead.
	MailFrom string
}

// Verify checks a received message: msg is the whole message as received
// (header and body, CRLF line ends); it is read to its end or until DKIM
// needs no more. Verify never fails: DNS trouble gives temperror results.
// It returns the complete Authentication-Results field, folded and
// CRLF-terminated, ready to prepend to the message.
func (v *Verifier) Verify(ctx context.Context, in Input, msg io.Reader) string {
	res := v.verify(ctx, in, msg)
	v.log.Debug("mail authentication",
		"remote", in.RemoteIP, "mail_from", in.MailFrom, "spf", res.spf.result,
		"dkim", len(res.dkim), "dmarc", res.dmarc.result, "from_domain", res.dmarc.fromDomain)
	return formatResults(in.AuthservID, res)
}

// results are the outcomes of all methods for one message.
type results struct {
	spf   spfOutcome
	dkim  []dkimOutcome
	dmarc dmarcOutcome
}

type dkimOutcome struct {
	result     authres.ResultValue
	domain     string // d=
	identifier string // i=
	reason     string
}

type dmarcOutcome struct {
	result     authres.ResultValue
	fromDomain string
	policy     string // p= of the record found ("" if none)
	subPolicy  string // sp= when the organisational record applied to a subdomain
	reason     string
}

func (v *Verifier) verify(ctx context.Context, in Input, msg io.Reader) results {
	ctx, cancel := context.WithTimeout(ctx, v.timeout)
	defer cancel()

	// SPF needs only the envelope: it runs while DKIM reads the message.
	spfc := make(chan spfOutcome, 1)
	go func() { spfc <- checkSPF(ctx, v.r, in.RemoteIP, in.HELO, in.MailFrom) }()

	br := bufio.NewReaderSize(msg, 64<<10)
	hdr, ended, herr := readHeader(br, maxHeaderBytes)
	fields, _ := splitHeader(hdr)

	var res results
	res.dkim = v.checkDKIM(ctx, fields, hdr, ended, herr, br)
	res.spf = <-spfc
	res.dmarc = v.checkDMARC(ctx, fields, herr, res.spf, res.dkim)
	return res
}

func (v *Verifier) checkDKIM(ctx context.Context, fields []headerField, hdr []byte, ended bool, herr error, body io.Reader) []dkimOutcome {
	signed := false
	for _, f := range fields {
		if strings.EqualFold(f.name, "DKIM-Signature") {
			signed = true
		}
	}
	if !signed && herr == nil {
		return nil
	}
	if herr != nil && !errors.Is(herr, errHeaderTooLarge) {
		return []dkimOutcome{{result: resTempError, reason: "reading the message: " + herr.Error()}}
	}
	var r io.Reader
	switch {
	case ended || herr != nil: // complete, or too large to hold
		r = io.MultiReader(bytes.NewReader(hdr), body)
	default:
		// No blank line: the body is empty, which reads the same with one.
		end := "\r\n"
		if !bytes.HasSuffix(hdr, []byte("\n")) {
			end = "\r\n\r\n"
		}
		r = io.MultiReader(bytes.NewReader(hdr), strings.NewReader(end))
	}
	verifs, err := dkim.VerifyWithOptions(r, &dkim.VerifyOptions{
		LookupTXT:        v.dkimLookupTXT(ctx),
		MaxVerifications: maxDKIMSignatures,
	})
	if err != nil && !errors.Is(err, dkim.ErrTooManySignatures) {
		return []dkimOutcome{{result: resPermError, reason: err.Error()}}
	}
	out := make([]dkimOutcome, 0, len(verifs))
	for _, vf := range verifs {
		o := dkimOutcome{result: resPass, domain: strings.ToLower(vf.Domain), identifier: vf.Identifier}
		switch {
		case vf.Err == nil:
		case dkim.IsTempFail(vf.Err):
			o.result, o.reason = resTempError, vf.Err.Error()
		case dkim.IsPermFail(vf.Err):
			o.result, o.reason = resPermError, vf.Err.Error()
		default:
			o.result, o.reason = resFail, vf.Err.Error()
		}
		out = append(out, o)
	}
	return out
}

// dkimLookupTXT adapts the resolver to go-msgauth, which tells a temporary
// failure by net.Error.Temporary.
func (v *Verifier) dkimLookupTXT(ctx context.Context) func(string) ([]string, error) {
	return func(name string) ([]string, error) {
		txts, err := v.r.LookupTXT(ctx, name)
		if err != nil {
			var de *DNSError
			if errors.As(err, &de) {
				return nil, de
			}
			return nil, &DNSError{Name: name, Type: "TXT", Err: err}
		}
		return txts, nil
	}
}

func (v *Verifier) checkDMARC(ctx context.Context, fields []headerField, herr error, spf spfOutcome, dkims []dkimOutcome) dmarcOutcome {
	from, err := fromDomain(fields)
	if err != nil {
		if herr != nil {
			err = fmt.Errorf("%w (%v)", err, herr)
		}
		return dmarcOutcome{result: resPermError, reason: err.Error()}
	}
	out := dmarcOutcome{fromDomain: from}
	rec, err := v.lookupDMARC(ctx, from)
	if org := orgDomain(from); errors.Is(err, dmarc.ErrNoPolicy) && org != from {
		rec, err = v.lookupDMARC(ctx, org)
		if rec != nil && rec.SubdomainPolicy != "" {
			out.subPolicy = string(rec.SubdomainPolicy)
		}
	}
	var de *DNSError
	switch {
	case errors.Is(err, dmarc.ErrNoPolicy):
		out.result, out.reason = resNone, "no DMARC record for "+from
		return out
	case errors.As(err, &de) && de.Temporary():
		out.result, out.reason = resTempError, err.Error()
		return out
	case err != nil:
		out.result, out.reason = resPermError, err.Error()
		return out
	}
	out.policy = string(rec.Policy)

	if spf.result == resPass && aligned(spf.domain, from, rec.SPFAlignment) {
		out.result = resPass
		return out
	}
	for _, d := range dkims {
		if d.result == resPass && aligned(d.domain, from, rec.DKIMAlignment) {
			out.result = resPass
			return out
		}
	}
	out.result = resFail
	return out
}

// lookupDMARC finds the one DMARC record at _dmarc.domain (RFC 7489
// §6.6.3): errors are dmarc.ErrNoPolicy, a temporary *DNSError, or a
// malformed or duplicated record.
func (v *Verifier) lookupDMARC(ctx context.Context, domain string) (*dmarc.Record, error) {
	txts, err := v.r.LookupTXT(ctx, "_dmarc."+domain)
	if errors.Is(err, ErrNotFound) {
		return nil, dmarc.ErrNoPolicy
	} else if err != nil {
		return nil, err
	}
	var recs []string
	for _, t := range txts {
		if tag, _, _ := strings.Cut(t, ";"); strings.TrimSpace(tag) == "v=DMARC1" {
			recs = append(recs, t)
		}
	}
	switch len(recs) {
	case 0:
		return nil, dmarc.ErrNoPolicy
	case 1:
	default:
		return nil, fmt.Errorf("several DMARC records at _dmarc.%s", domain)
	}
	rec, err := dmarc.Parse(recs[0])
	if err != nil {
		return nil, fmt.Errorf("DMARC record of %s: %w", domain, err)
	}
	return rec, nil
}

// orgDomain is the organisational domain (RFC 7489 §3.2): the public
// suffix and one more label. A public suffix itself is its own.
func orgDomain(d string) string {
	if od, err := publicsuffix.EffectiveTLDPlusOne(d); err == nil {
		return od
	}
	return d
}

// aligned compares an authenticated domain with the From domain: equal in
// strict mode, same organisational domain in relaxed mode (RFC 7489 §3.1).
func aligned(auth, from string, mode dmarc.AlignmentMode) bool {
	auth = strings.ToLower(strings.TrimSuffix(auth, "."))
	if auth == "" {
		return false
	}
	if auth == from {
		return true
	}
	return mode != dmarc.AlignmentStrict && orgDomain(auth) == orgDomain(from)
}

// formatResults writes the Authentication-Results field: one result per
// folded line, comments explaining failures.
func formatResults(authservID string, res results) string {
	id := formatAuthservID(authservID)
	var b strings.Builder
	b.WriteString("Authentication-Results: ")
	b.WriteString(id)

	spf := res.spf
	prop := "smtp.mailfrom"
	if spf.identity == "helo" {
		prop = "smtp.helo"
	}
	writeResult(&b, "spf", spf.result, spf.reason, prop, spf.sender)

	if len(res.dkim) == 0 {
		writeResult(&b, "dkim", resNone, "", "", "")
	}
	for _, d := range res.dkim {
		writeResult(&b, "dkim", d.result, d.reason, "header.d", d.domain, "header.i", d.identifier)
	}

	dm := res.dmarc
	comment := dm.reason
	if dm.policy != "" {
		comment = "p=" + dm.policy
		if dm.subPolicy != "" {
			comment += " sp=" + dm.subPolicy
		}
	}
	writeResult(&b, "dmarc", dm.result, comment, "header.from", dm.fromDomain)
	b.WriteString("\r\n")
	return b.String()
}

// writeResult appends ";\r\n\tmethod=result (comment) prop=value ...";
// properties with empty values are left out.
func writeResult(b *strings.Builder, method string, result authres.ResultValue, comment string, props ...string) {
	b.WriteString(";\r\n\t")
	b.WriteString(method)
	b.WriteByte('=')
	b.WriteString(string(result))
	if c := sanitizeComment(comment); c != "" {
		b.WriteString(" (")
		b.WriteString(c)
		b.WriteByte(')')
	}
	for i := 0; i+1 < len(props); i += 2 {
		v := formatPvalue(props[i+1])
		if v == "" {
			continue
		}
		b.WriteByte(' ')
		b.WriteString(props[i])
		b.WriteByte('=')
		b.WriteString(v)
	}
}

// sanitizeComment keeps a comment on one line, without characters that
// would end it or the result (parentheses, backslash, ';'), and short.
func sanitizeComment(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '(' || r == '[':
			b.WriteByte('[')
		case r == ')' || r == ']':
			b.WriteByte(']')
		case r == ';' || r == '\\':
			b.WriteByte(',')
		case r == '"':
			b.WriteByte('\'')
		case r < ' ' || r == 0x7f || r == '\uFFFD':
			b.WriteByte(' ')
		default:
			b.WriteRune(r)
		}
		if b.Len() > 200 {
			return strings.TrimSpace(b.String()) + "..."
		}
	}
	return strings.TrimSpace(b.String())
}

// formatAuthservID writes the authserv-id: a token, or a quoted-string
// when it holds other characters; control characters and white space go.
func formatAuthservID(s string) string {
	s = strings.Map(func(r rune) rune {
		if r <= ' ' || r == 0x7f || r == '\uFFFD' {
			return -1
		}
		return r
	}, s)
	if s == "" {
		return "localhost"
	}
	for i := 0; i < len(s); i++ {
		if !isTokenChar(s[i]) {
			return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
		}
	}
	return s
}

// formatPvalue writes a property value: bare when it is a plain domain or
// address, quoted otherwise (RFC 8601 §2.2 pvalue). Overlong values are
// left out rather than cut, since a cut value would be wrong.
func formatPvalue(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f || r == '\uFFFD' {
			return -1
		}
		return r
	}, s)
	if s == "" || len(s) > 512 {
		return ""
	}
	bare := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(isAlpha(c) || isDigit(c) || c >= 0x80 || strings.IndexByte("!#$%&'*+-./@^_`{|}~", c) >= 0) {
			bare = false
			break
		}
	}
	if bare && strings.Count(s, "@") <= 1 {
		return s
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}
