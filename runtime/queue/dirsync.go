package queue

import (
	"sync"

	"mailfountain.dev/mailfountain/runtime/safeio"
)

// dirSyncs makes new directory entries durable with one fsync of the
// directory for all the Enqueues waiting on it at once (group commit):
// an fsync that starts after an entry was made (a rename, a link)
// covers it, so a caller waits for the running fsync, if any, and then
// for one started after it asked, which one of the waiters runs for all.
// Under load this is one fsync of the bucket and one of keys/ for many
// messages instead of one each.
type dirSyncs struct {
	syncDir func(dir string) error // safeio.SyncDir; tests count calls

	mu   sync.Mutex
	dirs map[string]*dirSync
}

type dirSync struct {
	wake    *sync.Cond // on dirSyncs.mu: an fsync of the directory ended
	asked   uint64     // requests so far
	synced  uint64     // requests covered by the fsyncs done
	running bool
	users   int // callers in sync: the entry goes with the last
}

func newDirSyncs() *dirSyncs {
	return &dirSyncs{syncDir: safeio.SyncDir, dirs: map[string]*dirSync{}}
}

// sync returns once dir has been fsync'd after the call began: every
// entry made in dir before the call is durable.
func (s *dirSyncs) sync(dir string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.dirs[dir]
	if d == nil {
		d = &dirSync{wake: sync.NewCond(&s.mu)}
		s.dirs[dir] = d
	}
	d.users++
	defer func() {
		if d.users--; d.users == 0 {
			delete(s.dirs, dir)
		}
	}()
	d.asked++
	me := d.asked
	for d.synced < me {
		if d.running {
			d.wake.Wait()
			continue
		}
		// The fsync starts after every request counted so far was made.
		d.running = true
		upto := d.asked
		s.mu.Unlock()
		err := s.syncDir(dir)
		s.mu.Lock()
		d.running = false
		d.wake.Broadcast()
		if err != nil {
			return err // a waiter covered by it runs its own fsync
		}
		d.synced = max(d.synced, upto)
	}
	return nil
}
