package daemon

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/fsnotify/fsnotify"
	"golang.org/x/sys/unix"
)

// inotifyWatcher watches a directory with inotify directly rather than
// through fsnotify, for the two events fsnotify does not pass on:
// IN_CLOSE_WRITE (a file written to was closed: an in-place save is whole)
// and IN_MOVED_TO as such (fsnotify calls it Create, like a new empty
// file).
type inotifyWatcher struct {
	f       *os.File // the inotify descriptor, non-blocking: Close ends a Read
	dir     string
	events  chan event
	errs    chan error
	done    chan struct{} // closed by Close
	stopped chan struct{} // closed when run returns
}

const inotifyMask = unix.IN_CREATE | unix.IN_MODIFY | unix.IN_ATTRIB | unix.IN_CLOSE_WRITE |
	unix.IN_MOVED_FROM | unix.IN_MOVED_TO | unix.IN_DELETE | unix.IN_DELETE_SELF | unix.IN_MOVE_SELF

func newWatcher(dir string) (watcher, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("watch state: inotify: %w", err)
	}
	if _, err := unix.InotifyAddWatch(fd, dir, inotifyMask); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("watch state directory %s: %w", dir, err)
	}
	w := &inotifyWatcher{
		f: os.NewFile(uintptr(fd), "inotify"), dir: dir,
		events: make(chan event), errs: make(chan error), done: make(chan struct{}), stopped: make(chan struct{}),
	}
	go w.run()
	return w, nil
}

func (w *inotifyWatcher) Events() <-chan event { return w.events }
func (w *inotifyWatcher) Errors() <-chan error { return w.errs }

// Close stops the watcher and waits for its goroutine.
func (w *inotifyWatcher) Close() error {
	close(w.done)
	err := w.f.Close()
	<-w.stopped
	return err
}

func (w *inotifyWatcher) run() {
	defer close(w.stopped)
	defer close(w.events)
	buf := make([]byte, 64<<10)
	for {
		n, err := w.f.Read(buf)
		if err != nil {
			if !errors.Is(err, os.ErrClosed) {
				w.send(nil, fmt.Errorf("read inotify events: %w", err))
			}
			return
		}
		for _, r := range inotifyRecords(buf[:n]) {
			switch {
			case r.mask&unix.IN_Q_OVERFLOW != 0:
				w.send(nil, errors.New("inotify queue overflow: events lost"))
			case r.mask&unix.IN_IGNORED != 0:
				w.send(nil, fmt.Errorf("watch of %s ended (directory removed or unmounted)", w.dir))
			default:
				ev := w.event(r)
				w.send(&ev, nil)
			}
		}
	}
}

// send delivers an event or an error, unless the watcher is closing.
func (w *inotifyWatcher) send(ev *event, err error) {
	if ev != nil {
		select {
		case w.events <- *ev:
		case <-w.done:
		}
		return
	}
	select {
	case w.errs <- err:
	case <-w.done:
	}
}

// event turns a record into the watcher's event, with fsnotify's ops.
func (w *inotifyWatcher) event(r inotifyRecord) event {
	name := w.dir
	if r.name != "" {
		name = filepath.Join(w.dir, r.name)
	}
	ev := event{Event: fsnotify.Event{Name: name}}
	m := r.mask
	if m&(unix.IN_CREATE|unix.IN_MOVED_TO) != 0 {
		ev.Op |= fsnotify.Create
	}
	if m&(unix.IN_MODIFY|unix.IN_CLOSE_WRITE) != 0 {
		ev.Op |= fsnotify.Write
	}
	if m&(unix.IN_DELETE|unix.IN_DELETE_SELF) != 0 {
		ev.Op |= fsnotify.Remove
	}
	if m&(unix.IN_MOVED_FROM|unix.IN_MOVE_SELF) != 0 {
		ev.Op |= fsnotify.Rename
	}
	if m&unix.IN_ATTRIB != 0 {
		ev.Op |= fsnotify.Chmod
	}
	ev.saved = m&(unix.IN_CLOSE_WRITE|unix.IN_MOVED_TO) != 0
	ev.writing = !ev.saved && m&(unix.IN_CREATE|unix.IN_MODIFY) != 0
	return ev
}

// inotifyRecord is one struct inotify_event.
type inotifyRecord struct {
	mask uint32
	name string
}

// inotifyRecords decodes what a read of an inotify descriptor returned:
// records of a 16-byte header (wd, mask, cookie, len, in the machine's
// byte order) and len bytes of NUL-padded name. A truncated record ends
// the list.
func inotifyRecords(b []byte) []inotifyRecord {
	var out []inotifyRecord
	for len(b) >= unix.SizeofInotifyEvent {
		mask := binary.NativeEndian.Uint32(b[4:8])
		nameLen := int(binary.NativeEndian.Uint32(b[12:16]))
		if nameLen < 0 || nameLen > len(b)-unix.SizeofInotifyEvent {
			break
		}
		name := b[unix.SizeofInotifyEvent : unix.SizeofInotifyEvent+nameLen]
		for len(name) > 0 && name[len(name)-1] == 0 {
			name = name[:len(name)-1]
		}
		out = append(out, inotifyRecord{mask: mask, name: string(name)})
		b = b[unix.SizeofInotifyEvent+nameLen:]
	}
	return out
}
