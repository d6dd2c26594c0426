package applier

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"
)

// Bounds of the wait between two tries of the flock; the kernel has no
// flock with a timeout, so a waiter polls.
const (
	lockPollMin = 10 * time.Millisecond
	lockPollMax = 200 * time.Millisecond
)

// lock takes the apply lock: the in-process semaphore, then an exclusive
// flock on DATA/apply.lock. It waits until ctx is done. The returned
// function releases both.
func (a *Applier) lock(ctx context.Context) (func(), error) {
	path := lockPath(a.dir)
	select {
	case a.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("wait for lock %s: %w: %w", path, ErrLocked, ctx.Err())
	}
	release := func() { <-a.sem }

	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		release()
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	wait := lockPollMin
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			release()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			holder := lockHolder(f)
			f.Close()
			release()
			return nil, fmt.Errorf("wait for lock %s%s: %w: %w", path, holder, ErrLocked, ctx.Err())
		}
		wait = min(2*wait, lockPollMax)
	}
	// Say who holds it, for the error of whoever waits next.
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return func() {
		f.Truncate(0)
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
		release()
	}, nil
}

// lockHolder reads the pid the holder wrote, as " (held by pid N)".
func lockHolder(f *os.File) string {
	buf := make([]byte, 32)
	n, _ := f.ReadAt(buf, 0)
	pid := string(bytes.TrimSpace(buf[:n]))
	if _, err := strconv.Atoi(pid); err != nil {
		return ""
	}
	return " (held by pid " + pid + ")"
}
