package daemon

import (
	"time"

	"github.com/fsnotify/fsnotify"
)

// DefaultSettle is Config.Settle's default.
const DefaultSettle = 20 * time.Millisecond

// event is a file-system event in the watched directory.
type event struct {
	fsnotify.Event
	// saved: the file was closed after writing, or renamed into place; its
	// content is whole. Only Linux's watcher knows (inotify's
	// IN_CLOSE_WRITE and IN_MOVED_TO); elsewhere it is always false.
	saved bool
	// writing: the file was created or written to, and may not be whole
	// yet.
	writing bool
}

// watcher delivers the events of one directory until closed.
type watcher interface {
	Events() <-chan event
	Errors() <-chan error
	Close() error
}

// quiet decides how long the state files must stay quiet after an event
// before they are read: Debounce while a file may be half-written, Settle
// once every file written to was closed or renamed into place. A save
// ends with such an event (an editor writes the file and closes it, or
// writes another and renames it over), so that an edit applies Settle
// after the save instead of Debounce; a burst of saves still applies once,
// as each event starts the wait again. Only a single state file gets the
// short wait: in a directory, files saved one after the other (a git
// checkout) could otherwise be applied half-way through.
type quiet struct {
	settle, debounce time.Duration
	short            bool            // the target is a file: Settle may apply
	open             map[string]bool // files written to and not yet closed
}

func newQuiet(cfg Config, t target) *quiet {
	return &quiet{settle: cfg.Settle, debounce: cfg.Debounce, short: !t.isDir, open: map[string]bool{}}
}

// after returns how long to wait after ev.
func (q *quiet) after(ev event) time.Duration {
	switch {
	case ev.saved:
		delete(q.open, ev.Name)
	case ev.writing:
		q.open[ev.Name] = true
	case ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename):
		// The file is away: most likely in the middle of a save.
		return q.debounce
	}
	if q.short && len(q.open) == 0 && (ev.saved || ev.Has(fsnotify.Chmod)) {
		return q.settle
	}
	return q.debounce
}
