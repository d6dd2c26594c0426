package dnsd

import (
	"context"
	"net"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"mailfountain.dev/mailfountain/runtime/testenv"
)

// TestDig: Debian's dig (bind9-dnsutils) against the server: what a user
// or an administrator would type.
func TestDig(t *testing.T) {
	t.Parallel()
	dig := testenv.NeedTool(t, "dig")
	e := newEnv(t, Config{Recursor: &staticRecursor{}}, testSet(t, serial, false))
	host, port, err := net.SplitHostPort(e.addr)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		args []string
		// want are substrings of the output; lines, if not nil, are
		// the exact lines of +short.
		want  []string
		lines []string
	}{
		{"A, authoritative", []string{"mail.ma-societe.fr", "A"},
			[]string{"status: NOERROR", "flags: qr aa rd;", "mail.ma-societe.fr.\t10800\tIN\tA\t192.0.2.1", "EDNS: version: 0, flags:; udp: 1232"}, nil},
		{"MX +short", []string{"+short", "ma-societe.fr", "MX"}, nil, []string{"10 mail.ma-societe.fr."}},
		{"TXT +short", []string{"+short", "ma-societe.fr", "TXT"}, nil, []string{`"v=spf1 mx -all"`}},
		{"CNAME chased +short", []string{"+short", "www.ma-societe.fr", "A"}, nil, []string{"web.ma-societe.fr.", "192.0.2.80"}},
		{"wildcard +short", []string{"+short", "foo.wild.ma-societe.fr", "A"}, nil, []string{"192.0.2.99"}},
		{"NXDOMAIN with the SOA", []string{"nope.ma-societe.fr", "A"},
			[]string{"status: NXDOMAIN", "flags: qr aa rd;", "AUTHORITY: 1", "ma-societe.fr.\t\t300\tIN\tSOA\tns1.ma-societe.fr."}, nil},
		{"NODATA with the SOA", []string{"web.ma-societe.fr", "AAAA"},
			[]string{"status: NOERROR", "ANSWER: 0, AUTHORITY: 1", "ma-societe.fr.\t\t300\tIN\tSOA"}, nil},
		{"empty non-terminal", []string{"ent.ma-societe.fr", "A"}, []string{"status: NOERROR", "ANSWER: 0, AUTHORITY: 1"}, nil},
		{"truncated over UDP, dig retries over TCP", []string{"+bufsize=1232", "big.ma-societe.fr", "TXT"},
			[]string{"Truncated, retrying in TCP mode.", "ANSWER: 20,"}, nil},
		{"TCP", []string{"+tcp", "big.ma-societe.fr", "TXT"}, []string{"ANSWER: 20,"}, nil},
		{"ANY: one RRset", []string{"ma-societe.fr", "ANY"}, []string{"status: NOERROR", "ANSWER: 1,"}, nil},
		{"AXFR from the secondary", []string{"-b", "127.0.0.1", "ma-societe.fr", "AXFR"},
			[]string{"XFR size: " + strconv.Itoa(len(testZone(t, serial).Records)+1) + " records"}, nil},
		{"AXFR from a stranger", []string{"-b", "127.0.0.2", "ma-societe.fr", "AXFR"}, []string{"Transfer failed."}, nil},
		{"outside, from the WAN: REFUSED", []string{"-b", "127.0.0.1", "www.example.com", "A"},
			[]string{"status: REFUSED", "flags: qr rd;"}, nil},
		{"outside, from the LAN: recursed", []string{"-b", "127.0.1.2", "www.example.com", "A"},
			[]string{"status: NOERROR", "flags: qr rd ra;", "198.51.100.7"}, nil},
		{"split horizon +short", []string{"-b", "127.0.1.2", "+short", "mail.ma-societe.fr", "A"}, nil, []string{"127.0.1.1"}},
		{"EDNS version 1: BADVERS", []string{"+edns=1", "+noednsnegotiation", "mail.ma-societe.fr", "A"}, []string{"status: BADVERS"}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			args := append([]string{"@" + host, "-p", port, "+time=5", "+tries=1"}, c.args...)
			out, err := exec.CommandContext(ctx, dig, args...).CombinedOutput()
			if err != nil && !strings.Contains(string(out), "Transfer failed") {
				t.Fatalf("dig %q: %v\n%s", args, err, out)
			}
			for _, w := range c.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("dig %q: no %q in\n%s", args, w, out)
				}
			}
			if c.lines != nil {
				if got := strings.Split(strings.TrimSpace(string(out)), "\n"); !slices.Equal(got, c.lines) {
					t.Errorf("dig %q: %q, want %q", args, got, c.lines)
				}
			}
		})
	}
	// A publish shows at once.
	e.live.Publish(testSet(t, serial+1, false))
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := exec.Command(dig, "@"+host, "-p", port, "+short", "ma-societe.fr", "SOA").CombinedOutput()
		if err == nil && strings.Contains(string(out), strconv.Itoa(serial+1)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the new serial is not served: %s %v", out, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
