package queue

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Callers waiting while an fsync of their directory runs share the next
// one: N callers, two fsyncs. Each caller returns only after an fsync
// that started after its entry was made has ended.
func TestDirSyncsGroupCommit(t *testing.T) {
	const n = 20
	var (
		made    atomic.Int64 // entries made so far
		durable atomic.Int64 // entries covered by an ended fsync
		calls   atomic.Int64
		release = make(chan struct{})
	)
	s := newDirSyncs()
	s.syncDir = func(dir string) error {
		covered := made.Load()
		if calls.Add(1) == 1 {
			<-release
		}
		for {
			d := durable.Load()
			if covered <= d || durable.CompareAndSwap(d, covered) {
				return nil
			}
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			me := made.Add(1)
			if err := s.sync("/q/sched/1"); err != nil {
				errs <- err
				return
			}
			if d := durable.Load(); d < me {
				errs <- errors.New("returned before its entry was fsync'd")
			}
		})
	}
	// Hold the first fsync until every caller waits in sync.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		s.mu.Lock()
		users := 0
		if d := s.dirs["/q/sched/1"]; d != nil {
			users = d.users
		}
		s.mu.Unlock()
		if users == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d callers in sync, want %d", users, n)
		}
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if c := calls.Load(); c != 2 {
		t.Errorf("%d fsyncs for %d callers, want 2", c, n)
	}
	if len(s.dirs) != 0 {
		t.Errorf("%d directories left in the table", len(s.dirs))
	}
}

// An fsync that fails fails its runner; a caller it covered runs another.
func TestDirSyncsError(t *testing.T) {
	s := newDirSyncs()
	var calls atomic.Int64
	s.syncDir = func(string) error {
		if calls.Add(1) == 1 {
			return errors.New("EIO")
		}
		return nil
	}
	if err := s.sync("/q/keys"); err == nil {
		t.Fatal("the failed fsync was not reported")
	}
	if err := s.sync("/q/keys"); err != nil {
		t.Fatal(err)
	}
	if c := calls.Load(); c != 2 {
		t.Errorf("%d fsyncs, want 2", c)
	}
}
