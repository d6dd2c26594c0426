package hw

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// Box is the hardware this process drives. A nil *Box is "no box
// hardware": the network, firewall and DHCP reconcilers then touch
// nothing and say so.
type Box struct {
	Profile Profile
	// Virtual is the name of the virtual box's network namespace, "" on
	// a real box.
	Virtual string
}

// DefaultVirtual is the namespace of "--hardware virtual".
const DefaultVirtual = "mfbox"

// Hardware selection, as --hardware and MAILFOUNTAIN_HARDWARE write it.
const (
	SelectAuto    = "auto"    // a real box if this is one, else none
	SelectNone    = "none"    // never drive any hardware
	SelectVirtual = "virtual" // "virtual" or "virtual:NAME"
)

// Selection is a parsed --hardware value.
type Selection struct {
	Kind string // SelectAuto, SelectNone or SelectVirtual
	// Name is the virtual box's namespace.
	Name string
}

// ParseSelection parses "auto", "none", "virtual" or "virtual:NAME".
func ParseSelection(s string) (Selection, error) {
	kind, name, hasName := strings.Cut(s, ":")
	switch kind {
	case SelectAuto, SelectNone:
		if hasName {
			return Selection{}, fmt.Errorf("hardware %q: %s takes no name", s, kind)
		}
		return Selection{Kind: kind}, nil
	case SelectVirtual:
		if !hasName {
			name = DefaultVirtual
		}
		if err := checkNamespaceName(name); err != nil {
			return Selection{}, fmt.Errorf("hardware %q: %w", s, err)
		}
		return Selection{Kind: kind, Name: name}, nil
	}
	return Selection{}, fmt.Errorf("hardware %q: want auto, none, virtual or virtual:NAME", s)
}

// String is the selection as --hardware writes it.
func (s Selection) String() string {
	if s.Kind == SelectVirtual {
		return SelectVirtual + ":" + s.Name
	}
	return s.Kind
}

// checkNamespaceName keeps a namespace name to what can be a file name in
// /run/netns, with room for the peers' suffixes.
func checkNamespaceName(name string) error {
	if name == "" || len(name) > 32 {
		return errors.New("the namespace name must have 1 to 32 characters")
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("namespace name %q: only a-z, 0-9, - and _", name)
		}
	}
	return nil
}

// Start makes this process run on the selected hardware and returns its
// box: nil for none, and for auto on a machine that is not a box. For a
// virtual box it creates what is missing of it and, unless the process
// already runs inside it, replaces the process (same PID, same argv and
// env) by one that does: Start returns only in the new one.
func Start(sel Selection) (*Box, error) {
	switch sel.Kind {
	case SelectVirtual:
		in, err := InNamespace(sel.Name)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("virtual box %s: %w", sel.Name, err)
		}
		if !in {
			self, err := os.Executable()
			if err != nil {
				return nil, fmt.Errorf("virtual box %s: %w", sel.Name, err)
			}
			argv := append([]string{self}, os.Args[1:]...)
			return nil, Enter(sel.Name, argv, os.Environ())
		}
		// Inside: put back a port deleted by hand, as plugging it in.
		if err := EnsureVirtual(sel.Name); err != nil {
			return nil, err
		}
		return VirtualBox(sel.Name), nil
	case SelectAuto:
		if p, ok := Detect("/"); ok {
			return &Box{Profile: *p}, nil
		}
		return nil, nil
	case SelectNone:
		return nil, nil
	}
	return nil, fmt.Errorf("hardware %q: not a selection", sel.Kind)
}
