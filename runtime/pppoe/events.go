package pppoe

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// event is one line of the events file, written by the ip-up or ip-down
// script (see script): "up pid=123 ifname=ppp0 local=198.51.100.7
// remote=198.51.100.1 dns1=192.0.2.53 dns2=".
type event struct {
	up            bool
	pid           int
	ifname        string
	local, remote netip.Addr // valid in an up event
	dns           []netip.Addr
}

// maxEventLine bounds a line: ours are under 150 bytes.
const maxEventLine = 1024

// parseEvent parses one line of the events file, without its newline. An
// up event must carry the session's addresses; DNS servers are optional
// (the ISP may offer none); keys it does not know are ignored.
func parseEvent(line string) (event, error) {
	var ev event
	if len(line) > maxEventLine {
		return ev, fmt.Errorf("event line of %d bytes", len(line))
	}
	fields := strings.Split(line, " ")
	switch fields[0] {
	case "up":
		ev.up = true
	case "down":
	default:
		return ev, fmt.Errorf("event %q: neither up nor down", fields[0])
	}
	seen := map[string]bool{}
	for _, f := range fields[1:] {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return ev, fmt.Errorf("event field %q: no =", f)
		}
		if seen[k] {
			return ev, fmt.Errorf("event field %q twice", k)
		}
		seen[k] = true
		var err error
		switch k {
		case "pid":
			ev.pid, err = strconv.Atoi(v)
			if err == nil && ev.pid <= 0 {
				err = errors.New("not positive")
			}
		case "ifname":
			if v != "" {
				err = checkInterface(v)
			}
			ev.ifname = v
		case "local":
			ev.local, err = parseAddr(v, ev.up)
		case "remote":
			ev.remote, err = parseAddr(v, ev.up)
		case "dns1", "dns2":
			var a netip.Addr
			if a, err = parseAddr(v, false); a.IsValid() {
				ev.dns = append(ev.dns, a)
			}
		}
		if err != nil {
			return ev, fmt.Errorf("event field %s=%q: %w", k, v, err)
		}
	}
	if ev.pid == 0 {
		return ev, errors.New("event without pid")
	}
	if ev.up && (ev.ifname == "" || !ev.local.IsValid() || !ev.remote.IsValid()) {
		return ev, errors.New("up event without its interface, local and remote addresses")
	}
	return ev, nil
}

// parseAddr parses an IPv4 address (IPCP's are), "" when not required.
func parseAddr(v string, required bool) (netip.Addr, error) {
	if v == "" && !required {
		return netip.Addr{}, nil
	}
	a, err := netip.ParseAddr(v)
	if err != nil {
		return netip.Addr{}, err
	}
	if !a.Is4() {
		return netip.Addr{}, errors.New("not an IPv4 address")
	}
	return a, nil
}

// eventReader reads the lines appended to the events file since its last
// read.
type eventReader struct {
	path   string
	offset int64
}

// read returns the whole lines appended since the last read, each parsed
// or with its error. A line still being written (no newline yet) waits
// for the next read; a missing file has no lines.
func (r *eventReader) read() ([]event, []error, error) {
	f, err := os.Open(r.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("pppoe: read events: %w", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() < r.offset {
		r.offset = 0 // replaced by a shorter file: read it from its start
	}
	var evs []event
	var errs []error
	buf := make([]byte, 16<<10)
	for {
		n, err := f.ReadAt(buf, r.offset)
		if err != nil && err != io.EOF {
			return evs, errs, fmt.Errorf("pppoe: read events: %w", err)
		}
		data := buf[:n]
		consumed := 0
		for {
			i := bytes.IndexByte(data, '\n')
			if i < 0 {
				break
			}
			ev, err := parseEvent(string(data[:i]))
			if err != nil {
				errs = append(errs, err)
			} else {
				evs = append(evs, ev)
			}
			data = data[i+1:]
			consumed += i + 1
		}
		if consumed == 0 && len(data) > maxEventLine {
			// A line longer than ours can be and not ended: skip it.
			errs = append(errs, fmt.Errorf("event line of more than %d bytes", maxEventLine))
			consumed = len(data)
		}
		r.offset += int64(consumed)
		if n < len(buf) || consumed == 0 {
			return evs, errs, nil
		}
	}
}
