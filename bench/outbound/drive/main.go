// Command drive runs the parts of bench/outbound.sh around the relays it
// measures: a DNS server for the bench's domains, an SMTP sink that counts
// what the relays deliver, and an injector that submits the load.
//
// The bench's domains are dom0.bench … dom{D-1}.bench; domain i has the MX
// mx.domi.bench, whose address is 127.1.(i/250).(i%250+1): a loopback
// address of its own, so that a relay sees as many destinations as there
// are domains, and one sink listening on all addresses takes them all.
//
//	drive dns -listen ADDR -domains D
//
// serves DNS over UDP and TCP at ADDR until SIGTERM or SIGINT: MX and A for
// the domains, A for their MX hosts, NODATA for other types of those names
// and NXDOMAIN for any other name; the TXT record of "stats.bench." holds
// the number of queries answered so far ("mx=N a=N other=N").
//
//	drive dnsstats -server ADDR
//
// prints those counters: "MX A OTHER".
//
//	drive sink -listen ADDR -expect N [-timeout D]
//
// accepts every message over SMTP (PIPELINING offered, no STARTTLS) until it
// holds N distinct messages of the injector (their X-Bench-Seq field), then
// prints "FIRST_NS LAST_NS DISTINCT DUPLICATES DELIVERIES UNNUMBERED
// CONNECTIONS MAX_PARALLEL ADDRESSES MIN_BYTES MAX_BYTES CPU_S" and exits:
// the times (Unix nanoseconds) of the first and of the last message
// received, the messages received twice, the recipients of all
// transactions, the messages without a number, the connections, the most
// connections open at once, the distinct local addresses connected to, the
// smallest and largest message, its own CPU time. After -timeout it prints
// the same line and exits with status 1.
//
//	drive inject -addr HOST:PORT -count N -conns C -domains D -size BYTES [-first I] [-user U -pass P] [-from ADDRESS] [-wait D]
//
// opens C connections (retrying the first for -wait), authenticates each
// with AUTH PLAIN when -user is set, then submits messages -first …
// -first+N-1 over them, each connection reusing itself for message after
// message (MAIL, RCPT and DATA in one write when the server offers
// PIPELINING). Message i goes to rcpt@dom(i%D).bench, numbered i in its
// X-Bench-Seq field, with a body of BYTES bytes. It prints "START_NS END_NS
// SENT CPU_S": the time the connections were ready and the first message
// went out, the time the last 250 came back, the messages accepted and its
// own CPU time. Any refusal ends it with status 1.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: drive dns|dnsstats|sink|inject ... (see the package comment)")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	var err error
	switch os.Args[1] {
	case "dns":
		err = serveDNS(ctx, os.Args[2:])
	case "dnsstats":
		err = dnsStats(os.Args[2:])
	case "sink":
		err = runSink(ctx, os.Args[2:])
	case "inject":
		err = runInject(ctx, os.Args[2:])
	default:
		err = fmt.Errorf("unknown subcommand %q (dns, dnsstats, sink or inject)", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "drive:", err)
		os.Exit(1)
	}
}

// maxDomains is the number of distinct MX addresses mxAddr gives.
const maxDomains = 250 * 256

// domain is the name of the bench's domain i.
func domain(i int) string { return "dom" + strconv.Itoa(i) + ".bench" }

// mxAddr is the address of the MX host of domain i.
func mxAddr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{127, 1, byte(i / 250), byte(i%250 + 1)})
}

// cpuTime is the CPU time this process used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// ---- DNS ----

// resolver answers for the bench's domains and counts its answers.
type resolver struct {
	domains       int
	mx, a, others atomic.Int64
}

const statsName = "stats.bench."

// lookup parses a name of the bench: domain i ("domI.bench.") or its MX host
// ("mx.domI.bench.").
func (r *resolver) lookup(name string) (i int, host, ok bool) {
	name = strings.ToLower(name)
	if rest, found := strings.CutPrefix(name, "mx."); found {
		name, host = rest, true
	}
	num, found := strings.CutPrefix(name, "dom")
	if !found {
		return 0, false, false
	}
	num, found = strings.CutSuffix(num, ".bench.")
	if !found {
		return 0, false, false
	}
	i, err := strconv.Atoi(num)
	if err != nil || i < 0 || i >= r.domains || strconv.Itoa(i) != num {
		return 0, false, false
	}
	return i, host, true
}

// answer builds the reply to q.
func (r *resolver) answer(q *dns.Msg) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(q)
	m.Authoritative = true
	if len(q.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		return m
	}
	qq := q.Question[0]
	hdr := func(t uint16) dns.RR_Header {
		return dns.RR_Header{Name: qq.Name, Rrtype: t, Class: dns.ClassINET, Ttl: 3600}
	}
	if strings.EqualFold(qq.Name, statsName) && qq.Qtype == dns.TypeTXT {
		m.Answer = append(m.Answer, &dns.TXT{Hdr: hdr(dns.TypeTXT), Txt: []string{
			fmt.Sprintf("mx=%d a=%d other=%d", r.mx.Load(), r.a.Load(), r.others.Load())}})
		return m
	}
	i, host, ok := r.lookup(qq.Name)
	switch {
	case !ok:
		r.others.Add(1)
		m.Rcode = dns.RcodeNameError
	case qq.Qtype == dns.TypeMX && !host:
		r.mx.Add(1)
		m.Answer = append(m.Answer, &dns.MX{Hdr: hdr(dns.TypeMX), Preference: 10, Mx: "mx." + domain(i) + "."})
	case qq.Qtype == dns.TypeA:
		r.a.Add(1)
		m.Answer = append(m.Answer, &dns.A{Hdr: hdr(dns.TypeA), A: mxAddr(i).AsSlice()})
	default:
		r.others.Add(1) // NODATA: the name exists, not with that type
	}
	return m
}

func (r *resolver) ServeDNS(w dns.ResponseWriter, q *dns.Msg) {
	_ = w.WriteMsg(r.answer(q))
}

func serveDNS(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("dns", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:53", "address to serve DNS at (UDP and TCP)")
	domains := fs.Int("domains", 1000, "number of domains")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *domains < 1 || *domains > maxDomains {
		return fmt.Errorf("dns: -domains must be 1 to %d", maxDomains)
	}
	r := &resolver{domains: *domains}
	pc, err := net.ListenPacket("udp", *listen)
	if err != nil {
		return fmt.Errorf("dns: %w", err)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		pc.Close()
		return fmt.Errorf("dns: %w", err)
	}
	servers := []*dns.Server{{PacketConn: pc, Handler: r}, {Listener: ln, Handler: r}}
	errs := make(chan error, len(servers))
	for _, s := range servers {
		go func() { errs <- s.ActivateAndServe() }()
	}
	select {
	case <-ctx.Done():
	case err = <-errs:
	}
	for _, s := range servers {
		_ = s.Shutdown()
	}
	if err != nil {
		return fmt.Errorf("dns: %w", err)
	}
	return nil
}

func dnsStats(args []string) error {
	fs := flag.NewFlagSet("dnsstats", flag.ContinueOnError)
	server := fs.String("server", "127.0.0.1:53", "the bench's DNS server")
	if err := fs.Parse(args); err != nil {
		return err
	}
	q := new(dns.Msg)
	q.SetQuestion(statsName, dns.TypeTXT)
	in, err := dns.Exchange(q, *server)
	if err != nil {
		return fmt.Errorf("dnsstats: %w", err)
	}
	if len(in.Answer) != 1 {
		return fmt.Errorf("dnsstats: %d answers", len(in.Answer))
	}
	txt, ok := in.Answer[0].(*dns.TXT)
	if !ok || len(txt.Txt) != 1 {
		return errors.New("dnsstats: not the bench's DNS server")
	}
	var mx, a, other int64
	if _, err := fmt.Sscanf(txt.Txt[0], "mx=%d a=%d other=%d", &mx, &a, &other); err != nil {
		return fmt.Errorf("dnsstats: %q: %w", txt.Txt[0], err)
	}
	fmt.Println(mx, a, other)
	return nil
}

// ---- sink ----

// sink counts the messages delivered to it. Safe for concurrent use.
type sink struct {
	expect int
	done   chan struct{} // closed when expect distinct messages arrived

	mu                            sync.Mutex
	seen                          []bool // by X-Bench-Seq
	distinct, dups, rcpts, unnumb int
	conns, open, maxOpen          int
	locals                        map[netip.Addr]bool
	first, last                   time.Time
	minBytes, maxBytes            int
}

func newSink(expect int) *sink {
	return &sink{expect: expect, done: make(chan struct{}), locals: map[netip.Addr]bool{}, minBytes: -1}
}

func (s *sink) connected(local net.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.conns++
	s.open++
	s.maxOpen = max(s.maxOpen, s.open)
	if ta, ok := local.(*net.TCPAddr); ok {
		if a, ok := netip.AddrFromSlice(ta.IP); ok {
			s.locals[a.Unmap()] = true
		}
	}
}

func (s *sink) closed() {
	s.mu.Lock()
	s.open--
	s.mu.Unlock()
}

// received records a message of size bytes for rcpts recipients, numbered
// seq (-1: none).
func (s *sink) received(seq, size, rcpts int) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.first.IsZero() {
		s.first = now
	}
	s.last = now
	s.rcpts += rcpts
	if s.minBytes < 0 || size < s.minBytes {
		s.minBytes = size
	}
	s.maxBytes = max(s.maxBytes, size)
	if seq < 0 {
		s.unnumb++
		return
	}
	if seq >= len(s.seen) {
		s.seen = append(s.seen, make([]bool, seq+1-len(s.seen))...)
	}
	if s.seen[seq] {
		s.dups++
		return
	}
	s.seen[seq] = true
	s.distinct++
	if s.distinct == s.expect {
		close(s.done)
	}
}

func (s *sink) summary() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ns := func(t time.Time) int64 {
		if t.IsZero() {
			return 0
		}
		return t.UnixNano()
	}
	return fmt.Sprintf("%d %d %d %d %d %d %d %d %d %d %d %.2f", ns(s.first), ns(s.last), s.distinct, s.dups,
		s.rcpts, s.unnumb, s.conns, s.maxOpen, len(s.locals), max(s.minBytes, 0), s.maxBytes, cpuTime().Seconds())
}

const sinkName = "sink.bench"

// serve speaks SMTP on c until the client quits or fails.
func (s *sink) serve(c net.Conn) {
	defer c.Close()
	s.connected(c.LocalAddr())
	defer s.closed()
	r := bufio.NewReaderSize(c, 64<<10)
	w := bufio.NewWriterSize(c, 4<<10)
	// Replies to pipelined commands go out together: a reply is flushed
	// once no further command waits in the buffer.
	reply := func(lines string) error {
		w.WriteString(lines)
		if r.Buffered() == 0 {
			return w.Flush()
		}
		return nil
	}
	if reply("220 "+sinkName+" ESMTP\r\n") != nil {
		return
	}
	rcpts := 0
	for {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Minute))
		line, err := r.ReadSlice('\n')
		if err != nil {
			return
		}
		verb := strings.ToUpper(string(bytes.TrimSpace(line[:min(len(line), 4)])))
		var out string
		switch verb {
		case "EHLO":
			out = "250-" + sinkName + "\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 104857600\r\n"
		case "HELO":
			out = "250 " + sinkName + "\r\n"
		case "MAIL":
			rcpts = 0
			out = "250 2.1.0 Ok\r\n"
		case "RCPT":
			rcpts++
			out = "250 2.1.5 Ok\r\n"
		case "DATA":
			if rcpts == 0 {
				out = "503 5.5.1 No recipients\r\n"
				break
			}
			if reply("354 End data with <CR><LF>.<CR><LF>\r\n") != nil {
				return
			}
			seq, size, err := readData(r)
			if err != nil {
				return
			}
			s.received(seq, size, rcpts)
			rcpts = 0
			out = "250 2.0.0 Ok: queued\r\n"
		case "RSET":
			rcpts = 0
			out = "250 2.0.0 Ok\r\n"
		case "NOOP":
			out = "250 2.0.0 Ok\r\n"
		case "QUIT":
			w.WriteString("221 2.0.0 Bye\r\n")
			w.Flush()
			return
		default:
			out = "502 5.5.2 Command not recognized\r\n"
		}
		if reply(out) != nil {
			return
		}
	}
}

var seqField = []byte("x-bench-seq:")

// readData reads a message up to its ending dot line and returns its
// X-Bench-Seq (-1 if none) and its size.
func readData(r *bufio.Reader) (seq, size int, err error) {
	seq = -1
	header := true
	for {
		line, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A line longer than the buffer: part of a body line.
			size += len(line)
			header = false
			continue
		}
		if err != nil {
			return 0, 0, err
		}
		if bytes.Equal(line, []byte(".\r\n")) || bytes.Equal(line, []byte(".\n")) {
			return seq, size, nil
		}
		size += len(line)
		if !header {
			continue
		}
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			header = false
			continue
		}
		if len(line) > len(seqField) && bytes.EqualFold(line[:len(seqField)], seqField) {
			if n, err := strconv.Atoi(string(bytes.TrimSpace(line[len(seqField):]))); err == nil && n >= 0 {
				seq = n
			}
		}
	}
}

func runSink(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("sink", flag.ContinueOnError)
	listen := fs.String("listen", ":25", "address to listen at")
	expect := fs.Int("expect", 0, "distinct messages to wait for")
	timeout := fs.Duration("timeout", 30*time.Minute, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *expect <= 0 {
		return errors.New("sink needs -expect")
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("sink: %w", err)
	}
	// The bench waits for this line before it starts a relay.
	fmt.Fprintln(os.Stderr, "sink: listening on", ln.Addr())
	s := newSink(*expect)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(c)
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	select {
	case <-s.done:
		ln.Close()
		fmt.Println(s.summary())
		return nil
	case <-ctx.Done():
		ln.Close()
		fmt.Println(s.summary())
		return fmt.Errorf("sink: %d of %d messages after %s", s.count(), *expect, *timeout)
	}
}

func (s *sink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.distinct
}

// ---- injector ----

type injectConfig struct {
	addr                         string
	first, count, conns, domains int
	size                         int
	user, pass, from             string
	wait                         time.Duration
}

// client is one SMTP connection of the injector.
type client struct {
	c          net.Conn
	r          *bufio.Reader
	w          *bufio.Writer
	pipelining bool
}

// readReply reads one reply, whole, and checks its code.
func (cl *client) readReply(code string) error {
	for {
		line, err := cl.r.ReadString('\n')
		if err != nil {
			return fmt.Errorf("read reply: %w", err)
		}
		if len(line) < 4 || line[:3] != code {
			return fmt.Errorf("reply %q, want %s", strings.TrimSpace(line), code)
		}
		if line[3] == ' ' || line[3] == '\r' || line[3] == '\n' {
			return nil
		}
	}
}

func (cl *client) command(cmd, code string) error {
	cl.w.WriteString(cmd + "\r\n")
	if err := cl.w.Flush(); err != nil {
		return err
	}
	if err := cl.readReply(code); err != nil {
		return fmt.Errorf("%s: %w", strings.Fields(cmd)[0], err)
	}
	return nil
}

// dial opens and prepares one connection: greeting, EHLO, AUTH.
func dial(cfg injectConfig) (*client, error) {
	c, err := net.DialTimeout("tcp", cfg.addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	cl := &client{c: c, r: bufio.NewReaderSize(c, 4<<10), w: bufio.NewWriterSize(c, 64<<10)}
	if err := cl.setup(cfg); err != nil {
		c.Close()
		return nil, err
	}
	return cl, nil
}

func (cl *client) setup(cfg injectConfig) error {
	_ = cl.c.SetDeadline(time.Now().Add(time.Minute))
	defer cl.c.SetDeadline(time.Time{})
	if err := cl.readReply("220"); err != nil {
		return fmt.Errorf("greeting: %w", err)
	}
	cl.w.WriteString("EHLO inject.bench\r\n")
	if err := cl.w.Flush(); err != nil {
		return err
	}
	for {
		line, err := cl.r.ReadString('\n')
		if err != nil {
			return fmt.Errorf("EHLO: %w", err)
		}
		if !strings.HasPrefix(line, "250") {
			return fmt.Errorf("EHLO: reply %q", strings.TrimSpace(line))
		}
		if strings.EqualFold(strings.TrimSpace(line[4:]), "PIPELINING") {
			cl.pipelining = true
		}
		if len(line) < 4 || line[3] != '-' {
			break
		}
	}
	if cfg.user != "" {
		token := base64.StdEncoding.EncodeToString([]byte("\x00" + cfg.user + "\x00" + cfg.pass))
		if err := cl.command("AUTH PLAIN "+token, "235"); err != nil {
			return err
		}
	}
	return nil
}

// send submits message seq; head and body are reused buffers.
func (cl *client) send(cfg injectConfig, seq int, body []byte, head *bytes.Buffer) error {
	rcpt := "rcpt@" + domain(seq%cfg.domains)
	head.Reset()
	fmt.Fprintf(head, "From: <%s>\r\nTo: <%s>\r\nSubject: outbound bench %d\r\nDate: Fri, 04 Dec 2026 10:00:00 +0000\r\nMessage-Id: <%d@inject.bench>\r\nX-Bench-Seq: %d\r\n\r\n",
		cfg.from, rcpt, seq, seq, seq)
	steps := []struct{ cmd, code string }{
		{"MAIL FROM:<" + cfg.from + ">", "250"}, {"RCPT TO:<" + rcpt + ">", "250"}, {"DATA", "354"},
	}
	if cl.pipelining {
		for _, st := range steps {
			cl.w.WriteString(st.cmd + "\r\n")
		}
		if err := cl.w.Flush(); err != nil {
			return err
		}
		for _, st := range steps {
			if err := cl.readReply(st.code); err != nil {
				return fmt.Errorf("message %d: %s: %w", seq, strings.Fields(st.cmd)[0], err)
			}
		}
	} else {
		for _, st := range steps {
			if err := cl.command(st.cmd, st.code); err != nil {
				return fmt.Errorf("message %d: %w", seq, err)
			}
		}
	}
	cl.w.Write(head.Bytes())
	cl.w.Write(body)
	cl.w.WriteString(".\r\n")
	if err := cl.w.Flush(); err != nil {
		return err
	}
	if err := cl.readReply("250"); err != nil {
		return fmt.Errorf("message %d: end of data: %w", seq, err)
	}
	return nil
}

// makeBody is size bytes of 78-character lines ended by CRLF (the last one
// shorter), none starting with a dot.
func makeBody(size int) []byte {
	var b bytes.Buffer
	line := bytes.Repeat([]byte("X"), 78)
	for b.Len()+80 <= size {
		b.Write(line)
		b.WriteString("\r\n")
	}
	if rest := size - b.Len(); rest > 2 {
		b.Write(line[:rest-2])
		b.WriteString("\r\n")
	}
	return b.Bytes()
}

func runInject(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("inject", flag.ContinueOnError)
	var cfg injectConfig
	fs.StringVar(&cfg.addr, "addr", "", "the server's address, HOST:PORT")
	fs.IntVar(&cfg.first, "first", 0, "number of the first message")
	fs.IntVar(&cfg.count, "count", 0, "messages to submit")
	fs.IntVar(&cfg.conns, "conns", 50, "parallel connections")
	fs.IntVar(&cfg.domains, "domains", 1000, "recipient domains, round-robin")
	fs.IntVar(&cfg.size, "size", 10240, "body bytes of each message")
	fs.StringVar(&cfg.user, "user", "", "AUTH PLAIN as this user (none if empty)")
	fs.StringVar(&cfg.pass, "pass", "", "the user's password")
	fs.StringVar(&cfg.from, "from", "sender@inject.bench", "the envelope and header sender")
	fs.DurationVar(&cfg.wait, "wait", 0, "retry the first connection for this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if cfg.addr == "" || cfg.count <= 0 || cfg.conns <= 0 || cfg.domains <= 0 || cfg.size <= 0 {
		return errors.New("inject needs -addr, and -count, -conns, -domains, -size above 0")
	}
	cfg.conns = min(cfg.conns, cfg.count)

	// The first connection, retried while the server starts.
	deadline := time.Now().Add(cfg.wait)
	var first *client
	for {
		var err error
		if first, err = dial(cfg); err == nil {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("inject: connect to %s: %w", cfg.addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	clients := []*client{first}
	for range cfg.conns - 1 {
		cl, err := dial(cfg)
		if err != nil {
			for _, cl := range clients {
				cl.c.Close()
			}
			return fmt.Errorf("inject: connection %d to %s: %w", len(clients)+1, cfg.addr, err)
		}
		clients = append(clients, cl)
	}

	body := makeBody(cfg.size)
	var next, sent atomic.Int64
	var failed atomic.Bool
	var once sync.Once
	var firstErr error
	var wg sync.WaitGroup
	start := time.Now()
	for _, cl := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer cl.c.Close()
			var head bytes.Buffer
			for !failed.Load() && ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= cfg.count {
					_ = cl.command("QUIT", "221")
					return
				}
				if err := cl.send(cfg, cfg.first+i, body, &head); err != nil {
					failed.Store(true)
					once.Do(func() { firstErr = err })
					return
				}
				sent.Add(1)
			}
		}()
	}
	wg.Wait()
	end := time.Now()
	fmt.Printf("%d %d %d %.2f\n", start.UnixNano(), end.UnixNano(), sent.Load(), cpuTime().Seconds())
	if firstErr != nil {
		return fmt.Errorf("inject: %d of %d messages accepted: %w", sent.Load(), cfg.count, firstErr)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("inject: interrupted after %d of %d messages", sent.Load(), cfg.count)
	}
	return nil
}
