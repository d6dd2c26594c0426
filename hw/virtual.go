package hw

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// A virtual box is four network namespaces: NAME, the box, with its ports
// "wan", "lan1" and "lan2"; and one namespace per port for what is
// plugged into it, where the port's peer is "eth0": NAME-wan (the
// upstream router or modem), NAME-lan1 and NAME-lan2 (the office's
// computers). They are named namespaces (/run/netns), so that
// `ip netns exec NAME-wan dnsmasq …` drives the other end of a cable. They
// outlive the daemon, as a real box's ports do; RemoveVirtual deletes
// them.

// netnsDir is where named namespaces are mounted, as iproute2 does.
const netnsDir = "/run/netns"

// PeerPort is the name of a port's other end in its peer namespace.
const PeerPort = "eth0"

// NamespacePath is the file of the named namespace name.
func NamespacePath(name string) string { return filepath.Join(netnsDir, name) }

// PeerNamespace is the namespace of what is plugged into port of the
// virtual box name: "NAME-wan", "NAME-lan1", "NAME-lan2".
func PeerNamespace(name, port string) string { return name + "-" + port }

// VirtualBox returns the virtual box of namespace name.
func VirtualBox(name string) *Box {
	p, _ := Lookup("virtual")
	return &Box{Profile: p, Virtual: name}
}

// EnsureVirtual creates what is missing of the virtual box name: its
// namespace, the peers' namespaces, and a veth pair per port (the port in
// the box, up or down as the network reconciler leaves it; the peer up).
// Loopback is brought up in each namespace. It never changes the
// namespace it is called from.
func EnsureVirtual(name string) error {
	if err := checkNamespaceName(name); err != nil {
		return err
	}
	box, err := ensureNamespace(name)
	if err != nil {
		return fmt.Errorf("virtual box %s: %w", name, err)
	}
	defer box.Close()
	h, err := netlink.NewHandleAt(box)
	if err != nil {
		return fmt.Errorf("virtual box %s: netlink: %w", name, err)
	}
	defer h.Close()
	if err := loopbackUp(h); err != nil {
		return fmt.Errorf("virtual box %s: %w", name, err)
	}
	for _, port := range VirtualBox(name).Profile.Ports() {
		if err := ensurePort(h, name, port); err != nil {
			return fmt.Errorf("virtual box %s: port %s: %w", name, port, err)
		}
	}
	return nil
}

// ensurePort makes the veth pair of port, its peer in the peer namespace.
func ensurePort(h *netlink.Handle, name, port string) error {
	peerName := PeerNamespace(name, port)
	peer, err := ensureNamespace(peerName)
	if err != nil {
		return err
	}
	defer peer.Close()
	ph, err := netlink.NewHandleAt(peer)
	if err != nil {
		return fmt.Errorf("netlink in %s: %w", peerName, err)
	}
	defer ph.Close()
	if err := loopbackUp(ph); err != nil {
		return fmt.Errorf("%s: %w", peerName, err)
	}
	if _, err := h.LinkByName(port); err == nil {
		return nil
	}
	// Half a pair cannot exist (deleting one end deletes the other), but
	// an eth0 of another kind could: it would take the peer's name.
	if l, err := ph.LinkByName(PeerPort); err == nil {
		if err := ph.LinkDel(l); err != nil {
			return fmt.Errorf("remove stale %s in %s: %w", PeerPort, peerName, err)
		}
	}
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: port},
		PeerName:      PeerPort,
		PeerNamespace: netlink.NsFd(int(peer)),
	}
	if err := h.LinkAdd(veth); err != nil {
		return fmt.Errorf("add veth %s/%s: %w", port, PeerPort, err)
	}
	l, err := ph.LinkByName(PeerPort)
	if err != nil {
		return fmt.Errorf("find %s in %s: %w", PeerPort, peerName, err)
	}
	if err := ph.LinkSetUp(l); err != nil {
		return fmt.Errorf("set %s up in %s: %w", PeerPort, peerName, err)
	}
	return nil
}

func loopbackUp(h *netlink.Handle) error {
	lo, err := h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find lo: %w", err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		return fmt.Errorf("set lo up: %w", err)
	}
	return nil
}

// ensureNamespace opens the named namespace, creating it if missing.
func ensureNamespace(name string) (netns.NsHandle, error) {
	if ns, err := netns.GetFromPath(NamespacePath(name)); err == nil {
		return ns, nil
	}
	// Creating a namespace moves the calling thread into it: do it on a
	// thread of its own, locked, and move back before unlocking it.
	type result struct {
		ns  netns.NsHandle
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			done <- result{err: fmt.Errorf("current namespace: %w", err)}
			return
		}
		defer orig.Close()
		ns, err := netns.NewNamed(name)
		if serr := netns.Set(orig); serr != nil {
			// The thread is in the wrong namespace: leaving it locked
			// makes the runtime end it with the goroutine.
			done <- result{err: fmt.Errorf("back to the original namespace: %w", serr)}
			return
		}
		runtime.UnlockOSThread()
		if err != nil {
			done <- result{err: fmt.Errorf("create namespace %s: %w", name, err)}
			return
		}
		done <- result{ns: ns}
	}()
	r := <-done
	return r.ns, r.err
}

// RemoveVirtual deletes the virtual box name: its namespace and its peers'
// (what runs in them keeps them alive until it exits). Missing ones are
// not an error.
func RemoveVirtual(name string) error {
	var errs []error
	for _, n := range []string{name, PeerNamespace(name, "wan"), PeerNamespace(name, "lan1"), PeerNamespace(name, "lan2")} {
		if err := netns.DeleteNamed(n); err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, unix.EINVAL) {
			errs = append(errs, fmt.Errorf("delete namespace %s: %w", n, err))
		}
	}
	return errors.Join(errs...)
}

// InNamespace reports whether the calling thread is in the named
// namespace name.
func InNamespace(name string) (bool, error) {
	want, err := os.Stat(NamespacePath(name))
	if err != nil {
		return false, err
	}
	cur, err := os.Stat("/proc/thread-self/ns/net")
	if err != nil {
		return false, err
	}
	return os.SameFile(want, cur), nil
}

// Enter replaces this process by argv (argv[0] a path; same PID) running
// inside the virtual box name, creating the box if missing. It returns
// only on failure. The daemon calls it first thing, so that everything
// it does happens inside the box, as on a real one.
func Enter(name string, argv, env []string) error {
	if err := EnsureVirtual(name); err != nil {
		return err
	}
	ns, err := netns.GetFromPath(NamespacePath(name))
	if err != nil {
		return fmt.Errorf("open namespace %s: %w", name, err)
	}
	defer ns.Close()
	// execve runs the new program in the calling thread's namespace: this
	// one, locked, and never unlocked on success.
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("current namespace: %w", err)
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter namespace %s: %w", name, err)
	}
	err = syscall.Exec(argv[0], argv, env)
	if serr := netns.Set(orig); serr == nil {
		runtime.UnlockOSThread()
	}
	return fmt.Errorf("run %s in namespace %s: %w", argv[0], name, err)
}
