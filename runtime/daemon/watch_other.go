//go:build !linux

package daemon

import (
	"fmt"

	"github.com/fsnotify/fsnotify"
)

// fsWatcher is fsnotify's watcher, which cannot tell a whole file from a
// half-written one: every event waits Config.Debounce.
type fsWatcher struct {
	w       *fsnotify.Watcher
	events  chan event
	done    chan struct{} // closed by Close
	stopped chan struct{} // closed when run returns
}

func newWatcher(dir string) (watcher, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch state: %w", err)
	}
	if err := w.Add(dir); err != nil {
		w.Close()
		return nil, fmt.Errorf("watch state directory %s: %w", dir, err)
	}
	fw := &fsWatcher{w: w, events: make(chan event), done: make(chan struct{}), stopped: make(chan struct{})}
	go fw.run()
	return fw, nil
}

func (fw *fsWatcher) run() {
	defer close(fw.stopped)
	defer close(fw.events)
	for ev := range fw.w.Events {
		select {
		case fw.events <- event{Event: ev, writing: ev.Has(fsnotify.Create) || ev.Has(fsnotify.Write)}:
		case <-fw.done:
			return
		}
	}
}

func (fw *fsWatcher) Events() <-chan event { return fw.events }
func (fw *fsWatcher) Errors() <-chan error { return fw.w.Errors }

func (fw *fsWatcher) Close() error {
	close(fw.done)
	err := fw.w.Close()
	<-fw.stopped
	return err
}
