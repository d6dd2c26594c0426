package daemon

import (
	"encoding/binary"
	"testing"

	"golang.org/x/sys/unix"
)

func inotifyRecord16(mask uint32, name string, pad int) []byte {
	b := make([]byte, 16, 16+len(name)+pad)
	binary.NativeEndian.PutUint32(b[4:], mask)
	binary.NativeEndian.PutUint32(b[12:], uint32(len(name)+pad))
	b = append(b, name...)
	return append(b, make([]byte, pad)...)
}

func TestInotifyRecords(t *testing.T) {
	buf := append(inotifyRecord16(unix.IN_CLOSE_WRITE, "state.yaml", 6), inotifyRecord16(unix.IN_Q_OVERFLOW, "", 0)...)
	buf = append(buf, inotifyRecord16(unix.IN_MODIFY, "x", 3)[:18]...) // truncated
	got := inotifyRecords(buf)
	if len(got) != 2 || got[0].name != "state.yaml" || got[0].mask != unix.IN_CLOSE_WRITE || got[1].mask != unix.IN_Q_OVERFLOW || got[1].name != "" {
		t.Fatalf("records: %+v", got)
	}
}

// FuzzInotifyRecords: whatever a read returns, decoding never panics and
// never reads past it.
func FuzzInotifyRecords(f *testing.F) {
	f.Add(inotifyRecord16(unix.IN_MOVED_TO, "state.yaml", 2))
	f.Add([]byte{1, 2, 3})
	f.Add(append(inotifyRecord16(unix.IN_CREATE, "a", 0), 0xff, 0xff, 0xff, 0xff))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, r := range inotifyRecords(b) {
			if len(r.name) > len(b) {
				t.Fatalf("a name longer than the input: %q", r.name)
			}
		}
	})
}
