package smtpout

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"mailfountain.dev/mailfountain/runtime/mtasts"
)

// target is where one attempt goes.
type target struct {
	host   string // MX host name or smarthost, as in DNS
	addr   netip.AddrPort
	domain string         // the destination domain
	policy *mtasts.Policy // its MTA-STS policy, nil for none (or relay)
	relay  *Relay         // not nil: the smarthost
}

// key is the pool's key: connections serve again only the same host
// (its certificate was checked against that name) at the same address,
// and a smarthost only with the same login.
func (t *target) key() string {
	if t.relay != nil {
		return "relay " + t.addr.String() + " " + t.relay.Username
	}
	return "mx " + t.host + " " + t.addr.String()
}

func (t *target) name() string {
	if t.relay != nil {
		return "smarthost " + t.host + " [" + t.addr.String() + "]"
	}
	return t.host + " [" + t.addr.String() + "]"
}

// session is one SMTP connection to a remote server, between
// transactions or in one. Only one goroutine uses it at a time (the pool
// hands it out to one); mu guards the deadline against the cancellation
// of the user's context.
type session struct {
	t        *target
	cfg      *Config
	nc       net.Conn
	r        *bufio.Reader
	w        *bufio.Writer
	body     *bufio.Reader // reads the message sent, reused for each
	local    netip.Addr
	ext      map[string]string // EHLO keywords, upper case, and their parameters
	tls      bool
	verified bool // TLS with a certificate valid for t.host
	messages int  // transactions begun
	broken   bool // not to be used again
	idle     time.Time

	mu        sync.Mutex
	deadline  time.Time // of the current use; zero between uses
	cancelled bool
	stopCtx   func() bool
}

func newSession(nc net.Conn, t *target, cfg *Config) *session {
	sc := &session{t: t, cfg: cfg, nc: nc, ext: map[string]string{}}
	sc.r = bufio.NewReaderSize(nc, 4096)
	sc.w = bufio.NewWriterSize(writerFunc(sc.write), 32<<10)
	if ap, err := netip.ParseAddrPort(nc.LocalAddr().String()); err == nil {
		sc.local = ap.Addr().Unmap()
	}
	return sc
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// write sends p with the command deadline: a stalled reader never blocks
// us forever.
func (sc *session) write(p []byte) (int, error) {
	sc.setDeadline(sc.cfg.CommandTimeout, true)
	return sc.nc.Write(p)
}

// begin starts one use: its whole deadline, and ctx's cancellation.
func (sc *session) begin(ctx context.Context, total time.Duration) {
	sc.mu.Lock()
	sc.deadline = time.Now().Add(total)
	sc.cancelled = false
	sc.mu.Unlock()
	sc.stopCtx = context.AfterFunc(ctx, func() {
		sc.mu.Lock()
		defer sc.mu.Unlock()
		sc.cancelled = true
		_ = sc.nc.SetDeadline(time.Unix(1, 0))
	})
}

// end ends the use begun by begin.
func (sc *session) end() {
	if sc.stopCtx != nil {
		sc.stopCtx()
		sc.stopCtx = nil
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.cancelled {
		sc.broken = true
	}
	sc.deadline = time.Time{}
}

// setDeadline bounds the next read (or write) by d, and by the use's
// deadline.
func (sc *session) setDeadline(d time.Duration, write bool) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	dl := time.Now().Add(d)
	if sc.cancelled {
		dl = time.Unix(1, 0)
	} else if !sc.deadline.IsZero() && sc.deadline.Before(dl) {
		dl = sc.deadline
	}
	if write {
		_ = sc.nc.SetWriteDeadline(dl)
	} else {
		_ = sc.nc.SetReadDeadline(dl)
	}
}

// useConn replaces the connection (by its TLS client).
func (sc *session) useConn(nc net.Conn) {
	sc.mu.Lock()
	sc.nc = nc
	sc.mu.Unlock()
	sc.r.Reset(nc)
}

// read reads one reply within d.
func (sc *session) read(d time.Duration) (reply, error) {
	sc.setDeadline(d, false)
	rp, err := readReply(sc.r)
	if err != nil {
		sc.broken = true
		return rp, err
	}
	if rp.Code == 421 { // the server closes the connection (RFC 5321 §3.8)
		sc.broken = true
	}
	return rp, nil
}

// cmd sends one command and reads its reply.
func (sc *session) cmd(line string) (reply, error) {
	sc.w.WriteString(line)
	sc.w.WriteString("\r\n")
	if err := sc.w.Flush(); err != nil {
		sc.broken = true
		return reply{}, err
	}
	return sc.read(sc.cfg.CommandTimeout)
}

// reset readies a reused connection for a new transaction.
func (sc *session) reset() bool {
	rp, err := sc.cmd("RSET")
	return err == nil && rp.Code == 250
}

// close ends the connection, politely when it still works.
func (sc *session) close() {
	if !sc.broken {
		// A second for QUIT and its reply, writes included: a server
		// that stopped reading does not hold us.
		sc.mu.Lock()
		sc.deadline = time.Now().Add(time.Second)
		_ = sc.nc.SetDeadline(sc.deadline)
		sc.mu.Unlock()
		if _, err := sc.w.WriteString("QUIT\r\n"); err == nil && sc.w.Flush() == nil {
			_, _ = readReply(sc.r)
		}
	}
	sc.broken = true
	_ = sc.nc.Close()
}

// fail is a failure of the session before any transaction; it names the
// host and what was being done.
func (sc *session) fail(doing string, err error) *failure {
	sc.broken = true
	return &failure{text: fmt.Sprintf("%s: %s: %v", sc.t.name(), doing, err)}
}

// refused is a failure on a reply the server gave before any
// transaction.
func (sc *session) refused(doing string, rp reply) *failure {
	return &failure{code: rp.Code, enhanced: rp.Enhanced,
		text:    fmt.Sprintf("%s answered %s: %s", sc.t.name(), doing, rp.Raw),
		blocked: sc.t.relay == nil && blockAnswer(rp, sc.local)}
}

// open connects to t and readies a session for transactions: the
// greeting, EHLO, TLS, the MTA-STS decision, AUTH. tryTLS false skips
// STARTTLS (after a failed handshake, as Postfix's "may").
func (c *Client) open(ctx context.Context, t *target, tryTLS bool) (*session, *failure) {
	d := net.Dialer{Timeout: c.cfg.ConnectTimeout}
	nc, err := d.DialContext(ctx, "tcp", t.addr.String())
	if err != nil {
		return nil, &failure{text: fmt.Sprintf("%s: connect: %v", t.name(), err)}
	}
	sc := newSession(nc, t, &c.cfg)
	sc.begin(ctx, c.cfg.SessionTimeout)
	if f := c.handshake(sc, tryTLS); f != nil {
		sc.end()
		sc.close()
		return nil, f
	}
	return sc, nil
}

func (c *Client) handshake(sc *session, tryTLS bool) *failure {
	t := sc.t
	relay := t.relay
	if relay != nil && relay.Port == 465 {
		if f := c.startTLS(sc); f != nil {
			return f
		}
	}
	rp, err := sc.read(c.cfg.CommandTimeout)
	if err != nil {
		return sc.fail("greeting", err)
	}
	if rp.Code != 220 {
		return sc.refused("the connection", rp)
	}
	if f := c.ehlo(sc); f != nil {
		return f
	}
	if !sc.tls && (relay != nil || tryTLS) {
		_, offered := sc.ext["STARTTLS"]
		switch {
		case offered:
			rp, err := sc.cmd("STARTTLS")
			if err != nil {
				return sc.fail("STARTTLS", err)
			}
			if rp.Code != 220 {
				if relay != nil {
					return sc.refused("STARTTLS", rp)
				}
				break // go on in plain text, if MTA-STS allows it below
			}
			if f := c.startTLS(sc); f != nil {
				// A failed handshake leaves the connection unusable:
				// try again without TLS when nothing requires it.
				if relay == nil {
					if d := mtasts.Decide(t.policy, t.host, false); d.Action == mtasts.Refuse {
						r := c.mtastsRefusal(t, d)
						r.text += " (" + f.text + ")"
						return r
					}
					f.retryPlain = true
				}
				return f
			}
			if f := c.ehlo(sc); f != nil {
				return f
			}
		case relay != nil:
			return &failure{text: t.name() + " does not offer STARTTLS: mail to the smarthost needs TLS"}
		}
	}
	if relay == nil && t.policy != nil {
		switch d := mtasts.Decide(t.policy, t.host, sc.verified); d.Action {
		case mtasts.Refuse:
			return c.mtastsRefusal(t, d)
		case mtasts.DeliverAndLog:
			c.log.Warn("MTA-STS policy in mode testing violated", "domain", t.domain, "host", t.host, "reason", d.Reason)
		}
	}
	if relay != nil && relay.Username != "" {
		return c.auth(sc)
	}
	return nil
}

// mtastsRefusal is the failure of an MX host the destination's MTA-STS
// policy refuses: temporary (RFC 8461 §5: try another MX, or later).
func (c *Client) mtastsRefusal(t *target, d mtasts.Decision) *failure {
	c.met.MTASTSRefused()
	c.log.Warn("MX host refused by MTA-STS", "domain", t.domain, "host", t.host, "reason", d.Reason)
	return &failure{enhanced: "4.7.5", host: t.host, text: "MTA-STS policy of " + t.domain + " (mode enforce): " + d.Reason}
}

// startTLS runs the TLS handshake over sc. Mail to the smarthost needs a
// verified certificate; mail to an MX host takes any (opportunistic TLS,
// RFC 7435) and notes whether it was valid for the host, for MTA-STS.
func (c *Client) startTLS(sc *session) *failure {
	t := sc.t
	cfg := &tls.Config{ServerName: t.host, RootCAs: c.cfg.RootCAs}
	if t.relay == nil {
		cfg.InsecureSkipVerify = true // verified below, only to tell
	}
	tc := tls.Client(sc.nc, cfg)
	sc.setDeadline(c.cfg.CommandTimeout, true)
	sc.setDeadline(c.cfg.CommandTimeout, false)
	if err := tc.Handshake(); err != nil {
		f := sc.fail("TLS handshake", err)
		if t.relay != nil {
			f.text = fmt.Sprintf("%s: TLS with a verified certificate failed: %v", t.name(), err)
		}
		return f
	}
	sc.useConn(tc)
	sc.tls = true
	sc.verified = t.relay != nil || verifiedFor(tc.ConnectionState(), t.host, c.cfg.RootCAs)
	return nil
}

// verifiedFor reports whether the certificate of cs is valid for host
// (RFC 8461 §4.2: the PKIX rules, the MX host name).
func verifiedFor(cs tls.ConnectionState, host string, roots *x509.CertPool) bool {
	if len(cs.PeerCertificates) == 0 {
		return false
	}
	inter := x509.NewCertPool()
	for _, crt := range cs.PeerCertificates[1:] {
		inter.AddCert(crt)
	}
	_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: host})
	return err == nil
}

// ehlo greets with EHLO, or HELO when EHLO is not understood, and notes
// the extensions offered.
func (c *Client) ehlo(sc *session) *failure {
	name := c.hostname()
	rp, err := sc.cmd("EHLO " + name)
	if err != nil {
		return sc.fail("EHLO", err)
	}
	clear(sc.ext)
	if rp.Code == 250 {
		for _, l := range rp.Lines[1:] {
			kw, params, _ := strings.Cut(l, " ")
			sc.ext[strings.ToUpper(kw)] = params
		}
		return nil
	}
	if rp.Code < 500 {
		return sc.refused("EHLO", rp)
	}
	rp, err = sc.cmd("HELO " + name)
	if err != nil {
		return sc.fail("HELO", err)
	}
	if rp.Code != 250 {
		return sc.refused("HELO", rp)
	}
	return nil
}

// auth logs in to the smarthost. A refusal is final and temporary: the
// admin fixes the password, the mail waits.
func (c *Client) auth(sc *session) *failure {
	r := sc.t.relay
	var password string
	if r.Password != nil {
		pw, err := r.Password()
		if err != nil {
			return &failure{final: true, text: fmt.Sprintf("%s: the password of %s: %v", sc.t.name(), r.Username, err)}
		}
		password = pw
	}
	mechs := " " + strings.ToUpper(sc.ext["AUTH"]) + " "
	var rp reply
	var err error
	switch {
	case strings.Contains(mechs, " PLAIN "):
		rp, err = sc.cmd("AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00"+r.Username+"\x00"+password)))
	case strings.Contains(mechs, " LOGIN "):
		rp, err = sc.cmd("AUTH LOGIN")
		for _, s := range []string{r.Username, password} {
			if err != nil || rp.Code != 334 {
				break
			}
			rp, err = sc.cmd(base64.StdEncoding.EncodeToString([]byte(s)))
		}
	default:
		return &failure{final: true, text: fmt.Sprintf("%s offers no AUTH PLAIN or LOGIN (it offers %q): cannot log in as %s", sc.t.name(), strings.TrimSpace(mechs), r.Username)}
	}
	if err != nil {
		return sc.fail("AUTH", err)
	}
	if rp.Code != 235 {
		return &failure{code: rp.Code, enhanced: rp.Enhanced, final: true,
			text: fmt.Sprintf("%s refused the login of %s (check smtp.relay's username and password): %s", sc.t.name(), r.Username, rp.Raw)}
	}
	return nil
}

// send runs the transaction of m. A failure means that nothing was sent
// (the connection broke before the end of the message): another host may
// be tried. Once the message is sent, the results say what happened.
func (sc *session) send(m *Message) ([]Result, *failure) {
	sc.messages++
	if limit, err := strconv.ParseInt(sc.ext["SIZE"], 10, 64); err == nil && limit > 0 && m.Size > limit {
		return sc.local5xx(m, "5.3.4", fmt.Sprintf("the message (%d octets) is larger than %s accepts (%d octets)", m.Size, sc.t.name(), limit)), nil
	}
	_, utf8 := sc.ext["SMTPUTF8"]
	if m.SMTPUTF8 && !utf8 {
		return sc.local5xx(m, "5.6.7", sc.t.name()+" does not accept SMTPUTF8 (RFC 6531) addresses or headers"), nil
	}
	mail := "MAIL FROM:<" + m.From + ">"
	if _, ok := sc.ext["SIZE"]; ok {
		mail += " SIZE=" + strconv.FormatInt(m.Size, 10)
	}
	// Without 8BITMIME an 8-bit body goes as it is, as Postfix does
	// (smtp_send_8bitmime): nearly every server takes it.
	if _, ok := sc.ext["8BITMIME"]; ok && m.EightBit {
		mail += " BODY=8BITMIME"
	}
	if m.SMTPUTF8 {
		mail += " SMTPUTF8"
	}
	res := make([]Result, len(m.Rcpts))
	accepted := 0
	var mailRp, dataRp reply
	var err error
	if _, ok := sc.ext["PIPELINING"]; ok {
		// RFC 2920: MAIL, every RCPT and DATA in one write, then the
		// replies in order.
		sc.w.WriteString(mail + "\r\n")
		for _, r := range m.Rcpts {
			sc.w.WriteString("RCPT TO:<" + r + ">\r\n")
		}
		sc.w.WriteString("DATA\r\n")
		if err = sc.w.Flush(); err != nil {
			return nil, sc.fail("MAIL", err)
		}
		if mailRp, err = sc.read(sc.cfg.CommandTimeout); err != nil {
			return nil, sc.fail("MAIL", err)
		}
		for i, r := range m.Rcpts {
			rp, err := sc.read(sc.cfg.CommandTimeout)
			if err != nil {
				return nil, sc.fail("RCPT", err)
			}
			res[i] = sc.result(r, rp)
			if mailRp.Code == 250 && rp.Code/100 == 2 {
				accepted++
			}
		}
		if dataRp, err = sc.read(sc.cfg.CommandTimeout); err != nil {
			return nil, sc.fail("DATA", err)
		}
		if dataRp.Code == 354 && accepted == 0 {
			// DATA accepted though no recipient was: an empty message
			// ends it (RFC 2920 §3.1).
			if _, err := sc.cmd("."); err != nil {
				sc.broken = true
			}
		}
	} else {
		if mailRp, err = sc.cmd(mail); err != nil {
			return nil, sc.fail("MAIL", err)
		}
		if mailRp.Code == 250 {
			for i, r := range m.Rcpts {
				rp, err := sc.cmd("RCPT TO:<" + r + ">")
				if err != nil {
					return nil, sc.fail("RCPT", err)
				}
				res[i] = sc.result(r, rp)
				if rp.Code/100 == 2 {
					accepted++
				}
			}
			if accepted > 0 {
				if dataRp, err = sc.cmd("DATA"); err != nil {
					return nil, sc.fail("DATA", err)
				}
			}
		}
	}
	if mailRp.Code != 250 {
		for i, r := range m.Rcpts {
			res[i] = sc.result(r, mailRp)
		}
		return res, nil
	}
	if accepted == 0 {
		return res, nil
	}
	if dataRp.Code != 354 {
		sc.answerAccepted(res, dataRp)
		return res, nil
	}
	if sc.body == nil {
		sc.body = bufio.NewReaderSize(nil, 32<<10)
	}
	sc.body.Reset(io.NewSectionReader(m.Body, 0, m.Size))
	err = writeMessage(sc.w, sc.body)
	sc.body.Reset(nil) // not to keep the message's file
	if err != nil {
		sc.broken = true
		if errors.Is(err, errBody) {
			// Our side failed: nothing the server can take as a message
			// was sent; the connection is closed.
			return nil, &failure{final: true, text: fmt.Sprintf("reading message %s: %v", m.ID, err)}
		}
		return nil, sc.fail("sending the message", err)
	}
	final, err := sc.read(sc.cfg.DataTimeout)
	if err != nil {
		// The message may have arrived: do not try another host now.
		sc.answerAccepted(res, reply{Raw: fmt.Sprintf("%s: no answer after the end of the message (it may have been delivered): %v", sc.t.name(), err)})
		return res, nil
	}
	sc.answerAccepted(res, final)
	return res, nil
}

// answerAccepted gives the recipients RCPT accepted the answer rp.
func (sc *session) answerAccepted(res []Result, rp reply) {
	for i := range res {
		if res[i].Code/100 == 2 {
			res[i] = sc.result(res[i].Rcpt, rp)
		}
	}
}

func (sc *session) result(rcpt string, rp reply) Result {
	return Result{Rcpt: rcpt, Code: rp.Code, Enhanced: rp.Enhanced, Text: rp.Raw, Host: sc.t.host,
		Permanent: rp.Code >= 500, Blocked: sc.t.relay == nil && blockAnswer(rp, sc.local), Relay: sc.t.relay != nil}
}

// local5xx refuses every recipient for a reason found on our side.
func (sc *session) local5xx(m *Message, enhanced, text string) []Result {
	res := make([]Result, len(m.Rcpts))
	for i, r := range m.Rcpts {
		res[i] = Result{Rcpt: r, Enhanced: enhanced, Text: text, Host: sc.t.host, Permanent: true, Relay: sc.t.relay != nil}
	}
	return res
}

// errBody is matched by errors reading the message (not writing it).
var errBody = errors.New("message unreadable")

// writeMessage writes the message with its lines dot-stuffed (RFC 5321
// §4.5.2), bare LF made CRLF, and the final dot, and flushes.
func writeMessage(w *bufio.Writer, body io.Reader) error {
	br := bufio.NewReaderSize(body, 32<<10) // body itself when it is one
	lineStart, prevCR := true, false
	for {
		chunk, err := br.ReadSlice('\n')
		if n := len(chunk); n > 0 {
			if lineStart && chunk[0] == '.' {
				w.WriteByte('.')
			}
			if chunk[n-1] == '\n' {
				line := chunk[:n-1]
				cr := len(line) > 0 && line[len(line)-1] == '\r' || len(line) == 0 && prevCR
				w.Write(line)
				if !cr {
					w.WriteByte('\r')
				}
				w.WriteByte('\n')
				lineStart, prevCR = true, false
			} else {
				w.Write(chunk)
				lineStart, prevCR = false, chunk[n-1] == '\r'
			}
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("%w: %v", errBody, err)
		}
	}
	if !lineStart {
		w.WriteString("\r\n")
	}
	w.WriteString(".\r\n")
	return w.Flush()
}
