package forward

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// forward asks the upstreams in turn, rounds times over, until one gives
// an answer, and returns it. The answer is shared (the cache and the
// flight's waiters read it): nobody writes it.
func (f *Forwarder) forward(ctx context.Context, do bool, q *dns.Msg) (*dns.Msg, error) {
	qu := q.Question[0]
	what := qu.Name + " " + dns.TypeToString[qu.Qtype]
	var lastErr error
	for range rounds {
		ups := f.cfg.Upstreams()
		if len(ups) == 0 {
			return nil, fmt.Errorf("forward %s: %w", what, ErrNoUpstream)
		}
		for _, up := range ups {
			if ended(ctx) {
				err := ctx.Err()
				if err == nil {
					err = context.DeadlineExceeded
				}
				if lastErr != nil {
					return nil, fmt.Errorf("forward %s: %w (last: %v)", what, err, lastErr)
				}
				return nil, fmt.Errorf("forward %s: %w", what, err)
			}
			if !up.IsValid() {
				continue
			}
			start := time.Now()
			resp, err := f.exchange(ctx, up.String(), do, q)
			took := time.Since(start)
			result := ExchangeOK
			switch {
			case err != nil:
				result = ExchangeError
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded) {
					result = ExchangeTimeout
				}
			case resp.Rcode == dns.RcodeServerFailure:
				result = ExchangeServfail
			case resp.Rcode == dns.RcodeRefused:
				result = ExchangeRefused
			case resp.Rcode == dns.RcodeFormatError, resp.Rcode == dns.RcodeNotImplemented, resp.Rcode > 0xF:
				result = ExchangeError
			}
			f.cfg.Metrics.ForwardExchange(result, took)
			if result == ExchangeOK {
				return resp, nil
			}
			if err == nil {
				err = fmt.Errorf("rcode %s", dns.RcodeToString[resp.Rcode])
			}
			lastErr = fmt.Errorf("ask %s: %w", up, err)
			f.log.Debug("dns forward: upstream failed", "upstream", up.String(), "question", what, "err", err)
		}
	}
	if lastErr == nil {
		lastErr = ErrNoUpstream
	}
	return nil, fmt.Errorf("forward %s: %w", what, lastErr)
}

// exchange asks srv over UDP, and over TCP when the answer is truncated,
// within QueryTimeout and ctx.
func (f *Forwarder) exchange(ctx context.Context, srv string, do bool, q *dns.Msg) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, f.cfg.QueryTimeout)
	defer cancel()
	resp, err := f.exchangeNet(ctx, "udp", srv, do, q)
	if err == nil && resp.Truncated {
		resp, err = f.exchangeNet(ctx, "tcp", srv, do, q)
	}
	return resp, err
}

// exchangeNet sends q's question to srv over network from a new socket
// (a fresh source port) with a fresh ID, and waits for the response to
// it. Over UDP, datagrams that do not answer the query are discarded and
// the wait goes on; the socket is connected, so that only srv's
// datagrams reach it.
func (f *Forwarder) exchangeNet(ctx context.Context, network, srv string, do bool, q *dns.Msg) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.Id = dns.Id()
	m.RecursionDesired = q.RecursionDesired
	m.CheckingDisabled = q.CheckingDisabled
	m.Question = []dns.Question{q.Question[0]}
	m.SetEdns0(udpSize, do)

	var d net.Dialer
	raw, err := d.DialContext(ctx, network, srv)
	if err != nil {
		return nil, f.netErr(ctx, network, srv, err)
	}
	// The whole datagram is read even when the upstream ignores the
	// size asked: one cut short would not parse, and be waited past.
	conn := &dns.Conn{Conn: raw, UDPSize: dns.MaxMsgSize}
	defer conn.Close()
	// A cancelled ctx ends the wait at once, not at the deadline.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		if err := conn.SetDeadline(dl); err != nil {
			return nil, fmt.Errorf("exchange with %s: %w", srv, err)
		}
	}
	if err := conn.WriteMsg(m); err != nil {
		return nil, f.netErr(ctx, network, srv, err)
	}
	for {
		resp, err := conn.ReadMsg()
		if err != nil {
			if network == "udp" && !isNetErr(err) {
				// A datagram that does not parse: not the answer.
				f.discard(srv, "malformed", err)
				continue
			}
			return nil, f.netErr(ctx, network, srv, err)
		}
		if why := mismatch(m, resp); why != "" {
			if network == "udp" {
				f.discard(srv, why, nil)
				continue
			}
			return nil, fmt.Errorf("read tcp %s: not the answer: %s", srv, why)
		}
		return resp, nil
	}
}

func (f *Forwarder) discard(srv, why string, err error) {
	f.cfg.Metrics.ForwardDiscarded()
	f.log.Debug("dns forward: datagram discarded", "upstream", srv, "why", why, "err", err)
}

// netErr wraps err of an exchange, with ctx's error when ctx ended it.
func (f *Forwarder) netErr(ctx context.Context, network, srv string, err error) error {
	if ended(ctx) {
		cerr := ctx.Err()
		if cerr == nil {
			cerr = context.DeadlineExceeded
		}
		return fmt.Errorf("exchange with %s over %s: %w (%v)", srv, network, cerr, err)
	}
	return fmt.Errorf("exchange with %s over %s: %w", srv, network, err)
}

// isNetErr tells errors of the socket from those of a datagram's content.
func isNetErr(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed)
}

// mismatch says why resp is not the response to m, or "".
func mismatch(m, resp *dns.Msg) string {
	switch {
	case !resp.Response:
		return "not a response"
	case resp.Id != m.Id:
		return "another ID"
	case resp.Opcode != m.Opcode:
		return "another opcode"
	case len(resp.Question) != 1:
		return "not one question"
	}
	a, b := m.Question[0], resp.Question[0]
	if a.Qtype != b.Qtype || a.Qclass != b.Qclass || !strings.EqualFold(a.Name, b.Name) {
		return "another question"
	}
	return ""
}
