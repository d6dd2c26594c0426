// Command drive times one load of bench/inbound.sh and checks what it
// delivered.
//
//	drive run -maildir DIR -expect N [-server PID] [-timeout D] -- COMMAND ARGS...
//
// runs COMMAND (smtp-source), then waits until DIR/new and DIR/cur hold N
// messages in all, and prints in seconds "ELAPSED SOURCE SERVER CLIENT
// KERNEL MACHINE": the time from the command's start until the N-th message
// was in the Maildir, the time the command itself took, then the CPU time
// used meanwhile by the server (process PID and its descendants: Postfix's
// master and its daemons), by the command, by kernel threads (the
// filesystem's journal, network soft interrupts) and by the whole machine
// (busy time of all CPUs: the rest is what else ran). A server that
// delivers after its 250 (Postfix queues, then delivers) is timed until it
// has delivered everything.
//
//	drive check -maildir DIR -expect N -payload BYTES
//
// checks that DIR holds exactly N messages with N distinct Message-Ids, each
// a header, an empty line and the same body of BYTES bytes (up to 2 more:
// the line end that ends the last line) once every line ends with CRLF, and
// prints "MESSAGES BODY-SHA256 BODY-BYTES" so that two servers' bodies can
// be compared. Line ends are normalised because Postfix stores LF and
// MailFountain stores the CRLF of SMTP.
//
//	drive freeport
//
// prints a TCP port of 127.0.0.1 free at the time.
//
//	drive waitsmtp -addr HOST:PORT [-from ADDRESS -rcpt ADDRESS] [-timeout D]
//
// waits until an SMTP server there greets with 220 and, with -rcpt, takes
// a transaction from -from to -rcpt up to the recipient (a server may
// listen before it knows its mailboxes); it sends no message.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: drive run|check|freeport|waitsmtp ... (see the package comment)")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "run":
		err = run(os.Args[2:])
	case "check":
		err = check(os.Args[2:])
	case "freeport":
		err = freePort()
	case "waitsmtp":
		err = waitSMTP(os.Args[2:])
	default:
		err = fmt.Errorf("unknown subcommand %q (run, check, freeport or waitsmtp)", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "drive:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	dir := fs.String("maildir", "", "the Maildir to watch")
	expect := fs.Int("expect", 0, "messages the Maildir holds when the load is delivered")
	timeout := fs.Duration("timeout", 15*time.Minute, "give up after this long")
	server := fs.Int("server", 0, "the server's process id, for its CPU time")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cmdline := fs.Args()
	if *dir == "" || *expect <= 0 || len(cmdline) == 0 {
		return errors.New("run needs -maildir, -expect and a command")
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()

	cmd := exec.CommandContext(ctx, cmdline[0], cmdline[1:]...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cpu0, err := sample(*server)
	if err != nil {
		return err
	}
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("run %s: %w", cmdline[0], err)
	}
	source := time.Since(start)
	client := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()

	// Polled only once the client is done, so that the polling does not
	// compete with the server while it accepts. A readdir of ~20,000 names
	// takes a few milliseconds: 10 ms between polls keeps it cheap and
	// the measure within 0.1% on a run of tens of seconds.
	for {
		n, err := count(*dir)
		if err != nil {
			return err
		}
		if n >= *expect {
			break
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%d of %d messages delivered in %s after %s", n, *expect, *dir, *timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
	elapsed := time.Since(start)
	cpu1, err := sample(*server)
	if err != nil {
		return err
	}
	fmt.Printf("%.3f %.3f %.2f %.2f %.2f %.2f %.2f\n", elapsed.Seconds(), source.Seconds(),
		(cpu1.server - cpu0.server).Seconds(), client.Seconds(),
		kernelTime(cpu0, cpu1).Seconds(), (cpu1.machine - cpu0.machine).Seconds(),
		(cpu1.steal - cpu0.steal).Seconds())
	return nil
}

// cpuSample holds CPU times used since boot.
type cpuSample struct {
	server, machine, steal time.Duration
	// kernel is the time of each kernel thread (kthreadd's children).
	// Kept per thread: a kernel worker that exits takes its time with
	// it (no parent reaps it), and a sum would go down.
	kernel map[int]uint64
}

func sample(server int) (cpuSample, error) {
	var c cpuSample
	procs, err := readProcs()
	if err != nil {
		return c, err
	}
	if c.server, err = treeCPU(procs, server); err != nil {
		return c, err
	}
	c.kernel = map[int]uint64{}
	for p, pr := range procs {
		if p == 2 || pr.ppid == 2 {
			c.kernel[p] = pr.cpu
		}
	}
	c.machine, c.steal, err = machineCPU()
	return c, err
}

// kernelTime is the time kernel threads used between two samples: that
// of the threads of b, less what each had in a. A thread that exited in
// between is left out (its last moments are lost, not its whole life).
func kernelTime(a, b cpuSample) time.Duration {
	var total uint64
	for p, t := range b.kernel {
		if t0, ok := a.kernel[p]; ok && t0 <= t {
			t -= t0
		}
		total += t
	}
	return ticks(total)
}

// userHZ is the unit of the times of /proc/stat and /proc/PID/stat
// (USER_HZ, 100 on every Linux architecture Go runs on).
const userHZ = 100

func ticks(n uint64) time.Duration { return time.Duration(n) * time.Second / userHZ }

// machineCPU is the time all CPUs have been busy since boot, and the time
// the hypervisor gave them to other machines (steal): a run with much
// steal was slowed by a neighbour, not by what this machine ran.
func machineCPU() (busy, steal time.Duration, err error) {
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, fmt.Errorf("machine CPU time: %w", err)
	}
	line, _, _ := bytes.Cut(raw, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("machine CPU time: unexpected /proc/stat line %q", line)
	}
	var b, st uint64
	// user nice system idle iowait irq softirq steal: busy is all but
	// idle, iowait and steal.
	for i, v := range f[1:9] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("machine CPU time: %w", err)
		}
		switch i {
		case 3, 4:
		case 7:
			st = n
		default:
			b += n
		}
	}
	return ticks(b), ticks(st), nil
}

// treeCPU is the CPU time used by process pid and its descendants, those
// alive and those reaped (a reaped child's time is in its parent's
// cutime and cstime). The difference of two samples is the time used in
// between, even by processes that started or ended in between. 0 for pid 0.
func treeCPU(procs map[int]proc, pid int) (time.Duration, error) {
	if pid == 0 {
		return 0, nil
	}
	if _, ok := procs[pid]; !ok {
		return 0, fmt.Errorf("process CPU time: no process %d", pid)
	}
	var total uint64
	for p, pr := range procs {
		for q := p; q > 1; q = procs[q].ppid {
			if q == pid {
				total += pr.cpu
				break
			}
			if _, ok := procs[q]; !ok {
				break
			}
		}
	}
	return ticks(total), nil
}

// proc is a process's parent and CPU time (its own and its reaped
// children's), in ticks.
type proc struct {
	ppid int
	cpu  uint64
}

// readProcs reads every process of /proc.
func readProcs() (map[int]proc, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("process CPU time: %w", err)
	}
	procs := map[int]proc{}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // gone meanwhile
		}
		// The command name, in parentheses, may hold spaces: fields
		// follow the last ')'.
		i := bytes.LastIndexByte(raw, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(raw[i+1:]))
		if len(f) < 15 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		var cpu uint64
		for _, v := range f[11:15] { // utime stime cutime cstime
			n, _ := strconv.ParseUint(v, 10, 64)
			cpu += n
		}
		procs[p] = proc{ppid, cpu}
	}
	return procs, nil
}

// count is the number of entries of dir/new and dir/cur; a directory not
// created yet (Postfix makes the Maildir at the first delivery) holds none.
func count(dir string) (int, error) {
	total := 0
	for _, sub := range []string{"new", "cur"} {
		f, err := os.Open(filepath.Join(dir, sub))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("count messages: %w", err)
		}
		names, err := f.Readdirnames(-1)
		f.Close()
		if err != nil {
			return 0, fmt.Errorf("count messages in %s: %w", f.Name(), err)
		}
		total += len(names)
	}
	return total, nil
}

func check(args []string) error {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	dir := fs.String("maildir", "", "the Maildir to check")
	expect := fs.Int("expect", 0, "messages the Maildir must hold")
	payload := fs.Int("payload", 0, "body bytes smtp-source sent (its -l)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" || *expect <= 0 || *payload <= 0 {
		return errors.New("check needs -maildir, -expect and -payload")
	}
	sum, bodyBytes, err := checkMaildir(*dir, *expect, *payload)
	if err != nil {
		return err
	}
	fmt.Printf("%d %s %d\n", *expect, sum, bodyBytes)
	return nil
}

// checkMaildir checks the messages of dir (see check) and returns their
// body's SHA-256 and its size with CRLF line ends.
func checkMaildir(dir string, expect, payload int) (sum string, bodyBytes int, err error) {
	var files []string
	for _, sub := range []string{"new", "cur"} {
		m, err := filepath.Glob(filepath.Join(dir, sub, "*"))
		if err != nil {
			return "", 0, err
		}
		files = append(files, m...)
	}
	if len(files) != expect {
		return "", 0, fmt.Errorf("%s holds %d messages, want %d", dir, len(files), expect)
	}
	ids := make(map[string]bool, len(files))
	var first [sha256.Size]byte
	for i, name := range files {
		raw, err := os.ReadFile(name)
		if err != nil {
			return "", 0, fmt.Errorf("check message: %w", err)
		}
		msg := bytes.ReplaceAll(raw, []byte("\r\n"), []byte("\n"))
		header, body, ok := bytes.Cut(msg, []byte("\n\n"))
		if !ok {
			return "", 0, fmt.Errorf("%s: no end of header", name)
		}
		id := messageID(header)
		if id == "" {
			return "", 0, fmt.Errorf("%s: no Message-Id", name)
		}
		if ids[id] {
			return "", 0, fmt.Errorf("%s: Message-Id %s delivered twice", name, id)
		}
		ids[id] = true
		// The body as sent: every line ended by CRLF.
		n := len(body) + bytes.Count(body, []byte("\n"))
		if n < payload || n > payload+2 {
			return "", 0, fmt.Errorf("%s: body of %d bytes (with CRLF line ends), want %d", name, n, payload)
		}
		s := sha256.Sum256(body)
		if i == 0 {
			first, bodyBytes = s, n
		} else if s != first {
			return "", 0, fmt.Errorf("%s: body differs from %s's", name, files[0])
		}
	}
	return hex.EncodeToString(first[:]), bodyBytes, nil
}

// messageID is the value of the header's Message-Id field ("" if none);
// smtp-source numbers its messages there.
func messageID(header []byte) string {
	for line := range bytes.SplitSeq(header, []byte("\n")) {
		name, value, ok := bytes.Cut(line, []byte(":"))
		if ok && bytes.EqualFold(name, []byte("Message-Id")) {
			return string(bytes.TrimSpace(value))
		}
	}
	return ""
}

func freePort() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	fmt.Println(ln.Addr().(*net.TCPAddr).Port)
	return nil
}

func waitSMTP(args []string) error {
	fs := flag.NewFlagSet("waitsmtp", flag.ContinueOnError)
	addr := fs.String("addr", "", "the server's address")
	from := fs.String("from", "", "the sender of the trial transaction")
	rcpt := fs.String("rcpt", "", "a recipient the server must take")
	timeout := fs.Duration("timeout", 60*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	deadline := time.Now().Add(*timeout)
	for {
		err := greet(*addr, *from, *rcpt)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no SMTP server ready at %s after %s: %w", *addr, *timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// greet reads the server's greeting and, if rcpt is set, tries it as a
// recipient of a message from from; then it quits.
func greet(addr, from, rcpt string) error {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return err
	}
	r := bufio.NewReader(conn)
	if err := reply(r, "220"); err != nil {
		return fmt.Errorf("greeting: %w", err)
	}
	if rcpt != "" {
		for _, cmd := range []string{"EHLO drive.test", "MAIL FROM:<" + from + ">", "RCPT TO:<" + rcpt + ">", "RSET"} {
			if _, err := conn.Write([]byte(cmd + "\r\n")); err != nil {
				return fmt.Errorf("%s: %w", cmd, err)
			}
			if err := reply(r, "250"); err != nil {
				return fmt.Errorf("%s: %w", cmd, err)
			}
		}
	}
	_, _ = conn.Write([]byte("QUIT\r\n"))
	_, _ = r.ReadString('\n')
	return nil
}

// reply reads an SMTP reply, whole (it may span lines), and checks its code.
func reply(r *bufio.Reader, code string) error {
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return fmt.Errorf("read reply: %w", err)
		}
		if len(line) < 4 || line[:3] != code {
			return fmt.Errorf("reply %q, want %s", line, code)
		}
		if line[3] == ' ' {
			return nil
		}
	}
}
