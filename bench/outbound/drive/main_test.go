package main

import (
	"bufio"
	"context"
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// startSink serves a sink on a port of 127.0.0.1 until the test ends.
func startSink(t *testing.T, expect int) (*sink, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	s := newSink(expect)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(c)
		}
	}()
	return s, ln.Addr().String()
}

// TestInjectIntoSink: the injector's messages arrive at the sink once
// each, numbered, whole, over the connections asked for, pipelined.
func TestInjectIntoSink(t *testing.T) {
	tests := []struct {
		count, conns, size int
	}{
		{1, 1, 10240},
		{57, 4, 10240},
		{20, 50, 300}, // more connections than messages
	}
	for _, tt := range tests {
		t.Run(strconv.Itoa(tt.count)+"x"+strconv.Itoa(tt.conns), func(t *testing.T) {
			s, addr := startSink(t, tt.count)
			args := []string{"-addr", addr, "-count", strconv.Itoa(tt.count), "-conns", strconv.Itoa(tt.conns),
				"-domains", "7", "-size", strconv.Itoa(tt.size), "-first", "3"}
			if err := runInject(context.Background(), args); err != nil {
				t.Fatalf("inject: %v", err)
			}
			<-s.done
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.distinct != tt.count || s.dups != 0 || s.unnumb != 0 || s.rcpts != tt.count {
				t.Errorf("distinct %d dups %d unnumbered %d rcpts %d, want %d 0 0 %d", s.distinct, s.dups, s.unnumb, s.rcpts, tt.count, tt.count)
			}
			if want := min(tt.conns, tt.count); s.conns != want {
				t.Errorf("connections = %d, want %d", s.conns, want)
			}
			for i := range 3 {
				if i < len(s.seen) && s.seen[i] {
					t.Errorf("message %d below -first received", i)
				}
			}
			if s.minBytes < tt.size || s.maxBytes > tt.size+300 {
				t.Errorf("message sizes %d..%d, want about %d plus a header", s.minBytes, s.maxBytes, tt.size)
			}
		})
	}
}

// TestInjectStopsOnRefusal: a refused recipient ends the injection with an
// error naming the reply.
func TestInjectStopsOnRefusal(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		c.Write([]byte("220 x\r\n"))
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			switch strings.ToUpper(line[:4]) {
			case "EHLO", "MAIL":
				c.Write([]byte("250 ok\r\n"))
			case "RCPT":
				c.Write([]byte("451 4.3.0 waits for the outbound queue\r\n"))
			default:
				c.Write([]byte("503 bad sequence\r\n"))
			}
		}
	}()
	err = runInject(context.Background(), []string{"-addr", ln.Addr().String(), "-count", "3", "-conns", "1"})
	if err == nil || !strings.Contains(err.Error(), "451 4.3.0") {
		t.Fatalf("inject error = %v, want the 451 reply", err)
	}
}

func TestResolver(t *testing.T) {
	r := &resolver{domains: 1000}
	tests := []struct {
		name   string
		qtype  uint16
		rcode  int
		answer string // the answer's data, "" for none
	}{
		{"dom0.bench.", dns.TypeMX, dns.RcodeSuccess, "mx.dom0.bench."},
		{"DOM999.bench.", dns.TypeMX, dns.RcodeSuccess, "mx.dom999.bench."},
		{"mx.dom0.bench.", dns.TypeA, dns.RcodeSuccess, "127.1.0.1"},
		{"mx.dom999.bench.", dns.TypeA, dns.RcodeSuccess, "127.1.3.250"},
		{"mx.dom250.bench.", dns.TypeA, dns.RcodeSuccess, "127.1.1.1"},
		{"dom7.bench.", dns.TypeA, dns.RcodeSuccess, "127.1.0.8"}, // implicit MX
		{"mx.dom7.bench.", dns.TypeAAAA, dns.RcodeSuccess, ""},    // NODATA
		{"mx.dom7.bench.", dns.TypeMX, dns.RcodeSuccess, ""},
		{"dom1000.bench.", dns.TypeMX, dns.RcodeNameError, ""},
		{"dom01.bench.", dns.TypeMX, dns.RcodeNameError, ""},
		{"_mta-sts.dom1.bench.", dns.TypeTXT, dns.RcodeNameError, ""},
		{"example.com.", dns.TypeA, dns.RcodeNameError, ""},
	}
	for _, tt := range tests {
		q := new(dns.Msg)
		q.SetQuestion(tt.name, tt.qtype)
		m := r.answer(q)
		var got string
		if len(m.Answer) == 1 {
			switch rr := m.Answer[0].(type) {
			case *dns.MX:
				got = rr.Mx
			case *dns.A:
				got = rr.A.String()
			}
		}
		if m.Rcode != tt.rcode || got != tt.answer || len(m.Answer) > 1 {
			t.Errorf("%s %s: rcode %d answer %q (%d records), want %d %q", tt.name, dns.TypeToString[tt.qtype], m.Rcode, got, len(m.Answer), tt.rcode, tt.answer)
		}
	}
	if got := r.mx.Load() + r.a.Load() + r.others.Load(); got != int64(len(tests)) {
		t.Errorf("counted %d queries, want %d", got, len(tests))
	}
}

func TestReadData(t *testing.T) {
	tests := []struct {
		name, data string
		seq, size  int
	}{
		{"numbered", "Subject: x\r\nX-Bench-Seq: 7\r\n\r\nbody\r\n.\r\n", 7, 36},
		{"field name in any case", "x-bench-seq:  12 \r\n\r\nb\r\n.\r\n", 12, 24},
		{"unnumbered", "Subject: x\r\n\r\nX-Bench-Seq: 3\r\n.\r\n", -1, 30},
		{"bad number", "X-Bench-Seq: 3a\r\n\r\n.\r\n", -1, 19},
		{"short lines starting with a dot are not the end", "X-Bench-Seq: 1\r\n\r\n.a\n..\r\n.b\r\n.\r\n", 1, 29},
		{"bare LF end", "X-Bench-Seq: 2\r\n\r\nb\n.\n", 2, 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := bufio.NewReader(strings.NewReader(tt.data + "NEXT COMMAND\r\n"))
			seq, size, err := readData(r)
			if err != nil || seq != tt.seq || size != tt.size {
				t.Fatalf("readData = %d, %d, %v; want %d, %d, nil", seq, size, err, tt.seq, tt.size)
			}
			if rest, _ := r.ReadString('\n'); rest != "NEXT COMMAND\r\n" {
				t.Errorf("left %q after the message, want the next command", rest)
			}
		})
	}
}
