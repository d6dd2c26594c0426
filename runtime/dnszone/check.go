package dnszone

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Verdict is what Check concludes about one record set.
type Verdict string

const (
	// Match: the published records are the expected ones (TTLs aside).
	Match Verdict = "match"
	// Missing: the name does not exist, or has no record of the type (or,
	// for a TXT record set, none of its kind).
	Missing Verdict = "missing"
	// Differs: records are published, but not the expected ones.
	Differs Verdict = "differs"
	// Error: the resolver gave no usable answer (timeout, SERVFAIL,
	// REFUSED, ...): nothing is known of the record set.
	Error Verdict = "error"
)

// Finding is Check's report on one expected record set.
type Finding struct {
	// Name is the owner, fully qualified and in lower case.
	Name string
	// Type is the record type asked.
	Type uint16
	// Kind names the record set for people: "MX", "A", "SPF", "DKIM",
	// "DMARC", "MTA-STS", "TLS-RPT", "TXT", "NS", "SOA", ...
	Kind string
	// Expected are the records that should be published; Published those
	// the resolver answered (of the same kind, for TXT).
	Expected, Published []dns.RR
	Verdict             Verdict
	// Note says more: a TTL that differs, a CNAME in the way, a newer or
	// older SOA serial, the cause of an Error.
	Note string
	// Err is the cause of an Error verdict.
	Err error
}

// DefaultCheckTimeout bounds one exchange of Check with its resolver.
const DefaultCheckTimeout = 3 * time.Second

// Checker asks a resolver whether records are published as expected.
type Checker struct {
	// Resolver is the server asked, host:port. Queries ask for recursion
	// (RD): a recursive resolver sees what the rest of the world sees, and
	// an authoritative server answers its own zones regardless.
	Resolver string
	// Timeout bounds each exchange (UDP, and TCP after a truncated
	// answer); a query is sent twice over UDP before it is given up.
	// 0: DefaultCheckTimeout.
	Timeout time.Duration
	// Parallel is how many queries are in flight at once; 0: 4.
	Parallel int
}

// Check is (&Checker{Resolver: resolver}).Check.
func Check(ctx context.Context, resolver string, expected []dns.RR) []Finding {
	c := &Checker{Resolver: resolver}
	return c.Check(ctx, expected)
}

// Check asks the resolver for each record set of expected (by owner and
// type) and reports, in the order of expected, what is published against
// what is expected. Records compare by their data only: TTLs that differ
// are a note, never a difference (a resolver's cache counts them down).
// TXT records compare by their strings joined, and only with the
// published ones of their kind (the "v=" tag: SPF, DKIM, DMARC, MTA-STS),
// so that a site verification token beside the SPF record is no
// difference, and two SPF records are one too many. An SOA compares by its
// primary server and mailbox; another serial is a note.
func (c *Checker) Check(ctx context.Context, expected []dns.RR) []Finding {
	type key struct {
		name  string
		rtype uint16
		kind  string
	}
	var order []key
	sets := map[key][]dns.RR{}
	for _, rr := range expected {
		h := rr.Header()
		name := strings.ToLower(dns.Fqdn(h.Name))
		k := key{name, h.Rrtype, kindOf(rr, name)}
		if _, ok := sets[k]; !ok {
			order = append(order, k)
		}
		sets[k] = append(sets[k], rr)
	}
	type question struct {
		name  string
		rtype uint16
	}
	var questions []question
	index := map[question]int{} // in questions
	for _, k := range order {
		q := question{k.name, k.rtype}
		if _, ok := index[q]; !ok {
			index[q] = len(questions)
			questions = append(questions, q)
		}
	}
	answers := make([]answer, len(questions))
	c.forEach(ctx, len(questions), func(i int) {
		answers[i] = c.lookup(ctx, questions[i].name, questions[i].rtype)
	})

	findings := make([]Finding, 0, len(order))
	for _, k := range order {
		a := answers[index[question{k.name, k.rtype}]]
		f := Finding{Name: k.name, Type: k.rtype, Kind: k.kind, Expected: sets[k]}
		if a.err != nil {
			f.Verdict, f.Err, f.Note = Error, a.err, a.err.Error()
			findings = append(findings, f)
			continue
		}
		for _, rr := range a.records {
			if kindOf(rr, k.name) == k.kind { // by the name asked: a CNAME's target may be any
				f.Published = append(f.Published, rr)
			}
		}
		f.Verdict, f.Note = compare(f.Expected, f.Published)
		if a.note != "" {
			f.Note = joinNotes(a.note, f.Note)
		}
		if a.cname != "" && f.Verdict == Match {
			// The data is right, but behind an alias, where the records
			// themselves are expected: the alias may change on its own,
			// and an MX host or a zone apex must not be one (RFC 2181
			// §10.3, RFC 1034 §3.6.2).
			f.Verdict = Differs
		}
		findings = append(findings, f)
	}
	return findings
}

// forEach runs fn(0..n-1), at most Parallel at once, and returns when all
// have.
func (c *Checker) forEach(ctx context.Context, n int, fn func(int)) {
	par := c.Parallel
	if par <= 0 {
		par = 4
	}
	var wg sync.WaitGroup
	next := make(chan int)
	for range min(par, n) {
		wg.Go(func() {
			for i := range next {
				fn(i)
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}

// answer is what the resolver published for one name and type.
type answer struct {
	records []dns.RR // of the type asked, at the name (after CNAMEs)
	cname   string   // the last alias followed, if any
	note    string   // NXDOMAIN, NODATA, the CNAME
	err     error
}

// lookup asks the resolver for name's records of rtype.
func (c *Checker) lookup(ctx context.Context, name string, rtype uint16) answer {
	m := new(dns.Msg)
	m.SetQuestion(name, rtype) // RD set
	m.SetEdns0(1232, false)
	resp, err := c.exchange(ctx, m)
	if err != nil {
		return answer{err: fmt.Errorf("ask %s for %s %s: %w", c.Resolver, name, dns.TypeToString[rtype], err)}
	}
	switch resp.Rcode {
	case dns.RcodeSuccess:
	case dns.RcodeNameError:
		return answer{note: "no such name (NXDOMAIN)"}
	default:
		return answer{err: fmt.Errorf("ask %s for %s %s: answer %s", c.Resolver, name, dns.TypeToString[rtype], dns.RcodeToString[resp.Rcode])}
	}
	var a answer
	want := name
	for range 8 { // a bounded CNAME chain
		next := ""
		for _, rr := range resp.Answer {
			h := rr.Header()
			if !strings.EqualFold(h.Name, want) {
				continue
			}
			if h.Rrtype == rtype {
				a.records = append(a.records, rr)
			} else if cn, ok := rr.(*dns.CNAME); ok && rtype != dns.TypeCNAME {
				next = strings.ToLower(cn.Target)
			}
		}
		if len(a.records) > 0 || next == "" {
			break
		}
		want, a.cname = next, next
	}
	if a.cname != "" {
		a.note = "published as an alias (CNAME) of " + a.cname
	}
	if len(a.records) == 0 && a.cname == "" {
		a.note = fmt.Sprintf("no %s record at the name (NODATA)", dns.TypeToString[rtype])
	}
	return a
}

// exchange sends m over UDP, twice at most, then over TCP when the answer
// is truncated.
func (c *Checker) exchange(ctx context.Context, m *dns.Msg) (*dns.Msg, error) {
	var resp *dns.Msg
	var err error
	for range 2 {
		resp, err = c.exchangeNet(ctx, "udp", m)
		if err == nil || ctx.Err() != nil {
			break
		}
	}
	if err == nil && resp.Truncated {
		resp, err = c.exchangeNet(ctx, "tcp", m)
	}
	return resp, err
}

func (c *Checker) exchangeNet(ctx context.Context, network string, m *dns.Msg) (*dns.Msg, error) {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultCheckTimeout
	}
	cl := &dns.Client{Net: network, Timeout: timeout, UDPSize: 1232}
	qctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := cl.DialContext(qctx, c.Resolver)
	if err != nil {
		return nil, fmt.Errorf("over %s: %w", network, err)
	}
	defer conn.Close()
	// miekg/dns waits for its read deadline whatever the context says:
	// closing the connection ends the wait at once.
	stop := context.AfterFunc(qctx, func() { conn.Close() })
	defer stop()
	resp, _, err := cl.ExchangeWithConnContext(qctx, m, conn)
	if err != nil {
		if qctx.Err() != nil && !errors.Is(err, qctx.Err()) {
			err = fmt.Errorf("%w (%v)", qctx.Err(), err)
		}
		return nil, fmt.Errorf("over %s: %w", network, err)
	}
	return resp, nil
}

// compare gives the verdict on published against expected (of one owner,
// type and kind), and a note on their TTLs.
func compare(expected, published []dns.RR) (Verdict, string) {
	if len(published) == 0 {
		return Missing, ""
	}
	var ttls []string
	for _, e := range expected {
		i := slices.IndexFunc(published, func(p dns.RR) bool { return sameData(e, p) })
		if i < 0 {
			return Differs, ""
		}
		if pt, et := published[i].Header().Ttl, e.Header().Ttl; pt != et {
			ttls = append(ttls, fmt.Sprintf("TTL %d, expected %d", pt, et))
		}
	}
	for _, p := range published {
		if !slices.ContainsFunc(expected, func(e dns.RR) bool { return sameData(e, p) }) {
			return Differs, ""
		}
	}
	var notes []string
	if e, ok := expected[0].(*dns.SOA); ok {
		p := published[0].(*dns.SOA)
		if p.Serial != e.Serial {
			notes = append(notes, fmt.Sprintf("serial %d, expected %d", p.Serial, e.Serial))
		}
	}
	slices.Sort(ttls)
	notes = append(notes, slices.Compact(ttls)...)
	return Match, strings.Join(notes, "; ")
}

// sameData reports whether a and b have the same type and data: TTLs
// aside, names in any case, TXT strings joined, an SOA by its servers.
func sameData(a, b dns.RR) bool {
	if a.Header().Rrtype != b.Header().Rrtype {
		return false
	}
	switch a := a.(type) {
	case *dns.TXT:
		return strings.Join(a.Txt, "") == strings.Join(b.(*dns.TXT).Txt, "")
	case *dns.SOA:
		b := b.(*dns.SOA)
		return strings.EqualFold(a.Ns, b.Ns) && strings.EqualFold(a.Mbox, b.Mbox)
	}
	// The owners may differ by case; IsDuplicate compares them too.
	b = dns.Copy(b)
	b.Header().Name = a.Header().Name
	return dns.IsDuplicate(a, b)
}

// kindOf names a record set at owner for people; TXT records are told
// apart by their "v=" tag.
func kindOf(rr dns.RR, owner string) string {
	txt, ok := rr.(*dns.TXT)
	if !ok {
		return dns.TypeToString[rr.Header().Rrtype]
	}
	// The version tag comes first: "v=spf1 mx -all", "v=DMARC1; p=none".
	text := strings.TrimSpace(strings.Join(txt.Txt, ""))
	tag := strings.ToLower(text[:strings.IndexFunc(text+";", func(r rune) bool { return r == ';' || r == ' ' || r == '\t' })])
	switch {
	case tag == "v=spf1":
		return "SPF"
	case tag == "v=dkim1":
		return "DKIM"
	case tag == "v=dmarc1":
		return "DMARC"
	case tag == "v=stsv1":
		return "MTA-STS"
	case tag == "v=tlsrptv1":
		return "TLS-RPT"
	case strings.Contains(strings.ToLower(owner), "._domainkey."):
		// A DKIM key record may leave out its optional v= tag.
		return "DKIM"
	}
	return "TXT"
}

// String is the finding on one line: "MX ma-societe.fr.: match".
func (f Finding) String() string {
	s := fmt.Sprintf("%s %s: %s", f.Kind, f.Name, f.Verdict)
	if f.Note != "" {
		s += " (" + f.Note + ")"
	}
	return s
}

func joinNotes(a, b string) string {
	return strings.Join(slices.DeleteFunc([]string{a, b}, func(s string) bool { return s == "" }), "; ")
}
