// Command drive runs bench/firewall.sh's measurements, inside the
// bench's network namespace (it changes the nftables ruleset of the
// namespace it runs in: never run it elsewhere).
//
//	drive -rounds R -sizes 10,100,1000 -nft /usr/sbin/nft
//
// For each size N, R rounds, each timing in turn, from an empty table:
//   - MailFountain: the firewall reconciler's Observe, Plan and Apply of a
//     router document with N port forwards (one batch);
//   - nft: `nft -f FILE` of the same ruleset rendered as nft text by the
//     reconciler (Ruleset.Text: the table replaced in one transaction), the
//     process from its start to its exit.
//
// Then, on top of the largest size: a one-forward change (the reconciler
// with its last observation still valid, and a new reconciler, which
// lists the table and renders every forward first; nft -f of the two
// `add rule` lines), and a no-op reconcile
// (Observe and Plan; nothing may be sent: it checks the reconciler's
// batch count). It prints one line per figure, medians with min and max,
// and the ratios.
//
//	drive -text N
//
// prints the nft script of the table with N forwards (what the bench
// loads with nft -f), and changes nothing.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/nftables"

	"mailfountain.dev/mailfountain/reconcilers/firewall"
	"mailfountain.dev/mailfountain/schema"
)

func main() {
	rounds := flag.Int("rounds", 5, "rounds of each measurement")
	sizes := flag.String("sizes", "10,100,1000", "numbers of port forwards, comma separated")
	nft := flag.String("nft", "nft", "the nft program")
	noops := flag.Int("noops", 200, "no-op reconciles timed")
	text := flag.Int("text", -1, "print the nft script of the table with this many forwards, and exit")
	flag.Parse()
	if *text >= 0 {
		rs, err := firewall.Render(firewall.InputOf(doc(*text), wan))
		if err != nil {
			fmt.Fprintln(os.Stderr, "drive:", err)
			os.Exit(1)
		}
		fmt.Print(rs.Text())
		return
	}
	var ns []int
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "drive: bad size %q\n", s)
			os.Exit(2)
		}
		ns = append(ns, n)
	}
	if err := run(context.Background(), ns, *rounds, *noops, *nft); err != nil {
		fmt.Fprintln(os.Stderr, "drive:", err)
		os.Exit(1)
	}
}

// wan is the WAN port of the documents (the virtual box's); the rules
// match interfaces by name, so none need exist.
const wan = "wan"

// doc is a router document with n port forwards.
func doc(n int) *schema.State {
	st := &schema.State{Network: schema.Network{
		Mode: "router", WAN: schema.WAN{Method: "dhcp"}, LAN: schema.LAN{Address: "192.168.1.1"},
	}}
	for i := range n {
		st.Network.Forwards = append(st.Network.Forwards, schema.Forward{
			Port: 10000 + i, Protocol: "tcp",
			To:     netip.AddrFrom4([4]byte{192, 168, 1, byte(10 + i%200)}).String(),
			ToPort: 20000 + i,
		})
	}
	return st
}

func run(ctx context.Context, sizes []int, rounds, noops int, nft string) error {
	dir, err := os.MkdirTemp("", "fwbench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	var ratios []string
	for _, n := range sizes {
		rs, err := firewall.Render(firewall.InputOf(doc(n), wan))
		if err != nil {
			return err
		}
		file := filepath.Join(dir, fmt.Sprintf("table-%d.nft", n))
		if err := os.WriteFile(file, []byte(rs.Text()), 0o644); err != nil {
			return err
		}
		var ours, theirs []time.Duration
		for i := range rounds {
			// In turn, each side first every other round: a machine
			// that slows down slows both.
			sides := []func() error{
				func() error {
					if err := dropTable(); err != nil {
						return err
					}
					r := firewall.New(firewall.Config{WAN: wan})
					start := time.Now()
					if err := reconcile(ctx, r, doc(n)); err != nil {
						return err
					}
					ours = append(ours, time.Since(start))
					return nil
				},
				func() error {
					if err := dropTable(); err != nil {
						return err
					}
					d, err := nftFile(nft, file)
					theirs = append(theirs, d)
					return err
				},
			}
			if i%2 == 1 {
				slices.Reverse(sides)
			}
			for _, s := range sides {
				if err := s(); err != nil {
					return err
				}
			}
		}
		fmt.Printf("load %5d forwards (%d rules), from an empty table: mailfountain %s   nft -f %s\n", n, len(rs.Rules), stats(ours), stats(theirs))
		ratios = append(ratios, fmt.Sprintf("load %d forwards: %.2f×", n, ratio(ours, theirs)))
	}

	// One forward more on top of the largest size.
	n := sizes[len(sizes)-1]
	base, more := doc(n), doc(n+1)
	rsMore, err := firewall.Render(firewall.InputOf(more, wan))
	if err != nil {
		return err
	}
	baseFile := filepath.Join(dir, fmt.Sprintf("table-%d.nft", n))
	addFile := filepath.Join(dir, "add-one.nft")
	var add strings.Builder
	group := firewall.ForwardGroup(more.Network.Forwards[n])
	for _, x := range rsMore.Rules {
		if x.Group == group {
			fmt.Fprintf(&add, "add rule inet %s %s %s comment %q\n", firewall.TableName, x.Chain, x.Text, x.Key)
		}
	}
	if err := os.WriteFile(addFile, []byte(add.String()), 0o644); err != nil {
		return err
	}
	var warm, cold, theirs []time.Duration
	for range rounds {
		if err := dropTable(); err != nil {
			return err
		}
		if _, err := nftFile(nft, baseFile); err != nil {
			return err
		}
		d, err := nftFile(nft, addFile)
		if err != nil {
			return err
		}
		theirs = append(theirs, d)

		for _, c := range []*[]time.Duration{&warm, &cold} {
			if err := dropTable(); err != nil {
				return err
			}
			r := firewall.New(firewall.Config{WAN: wan})
			if err := reconcile(ctx, r, base); err != nil {
				return err
			}
			if c == &warm {
				// The daemon's usual case: a reconcile since the last
				// apply (its drift timer) found the table in sync.
				if err := reconcile(ctx, r, base); err != nil {
					return err
				}
			} else {
				// A reconciler that knows nothing yet (a restart): it
				// lists the table and renders every forward.
				r = firewall.New(firewall.Config{WAN: wan})
			}
			before := r.Stats()
			start := time.Now()
			if err := reconcile(ctx, r, more); err != nil {
				return err
			}
			*c = append(*c, time.Since(start))
			if s := r.Stats(); s.Batches != before.Batches+1 || s.Messages != before.Messages+2 {
				return fmt.Errorf("one forward more sent %d batches, %d messages; want 1 batch of 2 rules", s.Batches-before.Batches, s.Messages-before.Messages)
			}
		}
	}
	fmt.Printf("one forward more on top of %d: mailfountain %s (last observation valid), %s (a new reconciler: table listed, every forward rendered)   nft -f %s\n", n, stats(warm), stats(cold), stats(theirs))
	ratios = append(ratios, fmt.Sprintf("one forward more: %.2f× (new reconciler: %.2f×)", ratio(warm, theirs), ratio(cold, theirs)))

	// No-op reconciles of the table of n+1 forwards.
	r := firewall.New(firewall.Config{WAN: wan})
	if err := dropTable(); err != nil {
		return err
	}
	if err := reconcile(ctx, r, more); err != nil {
		return err
	}
	first := time.Now()
	if err := reconcile(ctx, r, more); err != nil {
		return err
	}
	listed := time.Since(first)
	before := r.Stats()
	var noop []time.Duration
	for range noops {
		start := time.Now()
		l, err := r.Observe(ctx)
		if err != nil {
			return err
		}
		ch, err := r.Plan(ctx, l, more)
		if err != nil {
			return err
		}
		noop = append(noop, time.Since(start))
		if len(ch) != 0 {
			return fmt.Errorf("no-op reconcile planned %d changes: %v", len(ch), ch)
		}
	}
	after := r.Stats()
	fmt.Printf("no-op reconcile of %d forwards: %s over %d reconciles; batches sent %d, tables listed %d (the first reconcile after the apply: %s)\n",
		n+1, stats(noop), noops, after.Batches-before.Batches, after.Dumps-before.Dumps, ms(listed))
	if after.Batches != before.Batches {
		return fmt.Errorf("no-op reconciles sent %d batches", after.Batches-before.Batches)
	}
	fmt.Println("ratios (mailfountain / nft -f, medians): " + strings.Join(ratios, ", "))
	return dropTable()
}

// reconcile runs Observe, Plan and Apply, as the engine does.
func reconcile(ctx context.Context, r *firewall.Reconciler, st *schema.State) error {
	l, err := r.Observe(ctx)
	if err != nil {
		return err
	}
	ch, err := r.Plan(ctx, l, st)
	if err != nil {
		return err
	}
	return r.Apply(ctx, ch)
}

// dropTable deletes the bench's table when there is one.
func dropTable() error {
	cc, err := nftables.New()
	if err != nil {
		return err
	}
	if _, err := cc.ListTableOfFamily(firewall.TableName, firewall.TableFamily); err != nil {
		return nil // none
	}
	cc.DelTable(&nftables.Table{Name: firewall.TableName, Family: firewall.TableFamily})
	return cc.Flush()
}

// nftFile times `nft -f file`, the process from its start to its exit.
func nftFile(nft, file string) (time.Duration, error) {
	start := time.Now()
	out, err := exec.Command(nft, "-f", file).CombinedOutput()
	d := time.Since(start)
	if err != nil {
		return d, fmt.Errorf("nft -f %s: %v: %s", file, err, out)
	}
	return d, nil
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

func stats(ds []time.Duration) string {
	return fmt.Sprintf("%s (min %s, max %s)", ms(median(ds)), ms(slices.Min(ds)), ms(slices.Max(ds)))
}

func ratio(a, b []time.Duration) float64 { return float64(median(a)) / float64(median(b)) }
