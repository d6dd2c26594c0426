package queue

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"mailfountain.dev/mailfountain/runtime/safeio"
)

// The admin commands work on the files, with or without Run. A message
// in the active set (being sent) is left to the scheduler: the command
// is recorded (durably for Hold and Delete: a flag in the file) and done
// when the attempt ends.

// info is what List and Show say of a message file.
func (q *Queue) info(id, path string, m *msgFile) Info {
	inf := Info{
		ID:      id,
		From:    m.from,
		Size:    m.sentSize(),
		Created: m.created,
		State:   Waiting,
	}
	dir := filepath.Base(filepath.Dir(path))
	if dir == dirHold || m.flags&flagHeld != 0 {
		inf.State = Held
	} else if t, ok := bucketTime(dir); ok {
		inf.Next = t
	}
	rcpts := m.rcpts
	q.mu.Lock()
	a := q.active[id]
	q.mu.Unlock()
	if a != nil {
		// Being sent: the attempts of this round are in memory until
		// the round ends (only a delivery is written at once).
		a.mu.Lock()
		rcpts = append([]rcpt(nil), a.m.rcpts...)
		a.mu.Unlock()
	}
	for _, r := range rcpts {
		rc := Recipient{
			Addr:      r.addr,
			From:      m.from,
			Status:    "pending",
			Attempts:  r.attempts,
			LastError: r.lastErr,
			ViaRelay:  r.status&rcptViaRelay != 0,
		}
		if r.forward {
			rc.From = q.reversePath(m.from)
		}
		switch {
		case r.status&rcptDelivered != 0:
			rc.Status = "delivered"
		case r.status&rcptBounced != 0:
			rc.Status = "bounced"
		}
		inf.Recipients = append(inf.Recipients, rc)
	}
	return inf
}

// List calls fn for each message, held ones first, then in the order
// they are due, until fn returns false. It reads one message at a time
// (and the names of one bucket: the messages due in one second).
func (q *Queue) List(ctx context.Context, fn func(Info) bool) error {
	stop := errors.New("stop")
	each := func(dir string, sorted bool) error {
		names := eachName
		if sorted {
			names = eachSorted
		}
		return names(dir, func(id string) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			p := filepath.Join(dir, id)
			m, err := readFile(p)
			if errors.Is(err, fs.ErrNotExist) {
				return nil // sent or moved meanwhile
			}
			if err != nil {
				q.log.Warn("queue: list", "id", id, "err", err)
				return nil
			}
			if !fn(q.info(id, p, m)) {
				return stop
			}
			return nil
		})
	}
	err := each(q.path(dirHold), false)
	if err == nil {
		var bs []string
		if bs, err = q.buckets(); err == nil {
			for _, b := range bs {
				if err = each(q.path(dirSched, b), true); err != nil {
					break
				}
			}
		}
	}
	if err != nil && err != stop && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("list queue: %w", err)
	}
	return nil
}

// Show returns what the queue knows of a message.
func (q *Queue) Show(ctx context.Context, id string) (*Info, error) {
	p, err := q.locate(id)
	if err != nil {
		return nil, fmt.Errorf("show %s: %w", id, err)
	}
	m, err := readFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		err = ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("show %s: %w", id, err)
	}
	inf := q.info(id, p, m)
	return &inf, nil
}

// admin runs an admin command on a message: onActive when it is being
// sent, onFile otherwise. Both run under q.mu.
func (q *Queue) admin(id, what string, onActive func(a *active) error, onFile func(path string, m *msgFile) error) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if a, ok := q.active[id]; ok {
		if err := onActive(a); err != nil {
			return fmt.Errorf("%s %s: %w", what, id, err)
		}
		return nil
	}
	p, err := q.locate(id)
	if err != nil {
		return fmt.Errorf("%s %s: %w", what, id, err)
	}
	m, err := readFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		err = ErrNotFound
	}
	if err == nil {
		err = onFile(p, m)
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w", what, id, err)
	}
	return nil
}

// Hold keeps a message from being tried until Release. It is durable
// when it returns.
func (q *Queue) Hold(ctx context.Context, id string) error {
	err := q.admin(id, "hold", func(a *active) error {
		a.hold = true
		return setFlag(a.path, flagHeld, true)
	}, func(p string, m *msgFile) error {
		if m.flags&flagHeld == 0 {
			if err := setFlag(p, flagHeld, true); err != nil {
				return err
			}
		}
		if filepath.Dir(p) == q.path(dirHold) {
			return nil
		}
		return os.Rename(p, q.path(dirHold, id))
	})
	if err == nil {
		q.log.Info("queue: held", "id", id)
	}
	return err
}

// Release puts a held message back in line, due now.
func (q *Queue) Release(ctx context.Context, id string) error {
	err := q.admin(id, "release", func(a *active) error {
		a.released = a.released || a.hold
		a.hold = false
		return setFlag(a.path, flagHeld, false)
	}, func(p string, m *msgFile) error {
		if m.flags&flagHeld != 0 {
			if err := setFlag(p, flagHeld, false); err != nil {
				return err
			}
		}
		return q.moveDue(id, p, q.now())
	})
	if err == nil {
		q.log.Info("queue: released", "id", id)
		q.wake()
	}
	return err
}

// Retry makes a message due now and resets its backoff. A held message
// stays held (ErrHeld): an administrator held it, Release lets it go.
func (q *Queue) Retry(ctx context.Context, id string) error {
	err := q.admin(id, "retry", func(a *active) error {
		if a.hold {
			return ErrHeld
		}
		a.retry = true
		return nil
	}, func(p string, m *msgFile) error {
		if m.flags&flagHeld != 0 {
			return ErrHeld
		}
		if err := appendRecord(p, m.end, encodeRecord(0, m.rcpts, nil)); err != nil {
			return err
		}
		return q.moveDue(id, p, q.now())
	})
	if err == nil {
		q.log.Info("queue: retry now", "id", id)
		q.wake()
	}
	return err
}

// ErrHeld is Retry's answer for a held message.
var ErrHeld = errors.New("the message is held: release it first")

// Delete removes a message without a report to its sender.
func (q *Queue) Delete(ctx context.Context, id string) error {
	var from string
	var pending int
	err := q.admin(id, "delete", func(a *active) error {
		a.del = true
		from = a.m.from
		return setFlag(a.path, flagDeleted, true)
	}, func(p string, m *msgFile) error {
		from = m.from
		for _, r := range m.rcpts {
			if !r.done() {
				pending++
			}
		}
		if err := q.remove(id, p, m); err != nil {
			return err
		}
		if err := safeio.SyncDir(filepath.Dir(p)); err != nil {
			return err
		}
		q.met.QueueSize(int(q.count.Add(-1)))
		q.met.Recipients(ResultDeleted, pending)
		return nil
	})
	if err == nil {
		q.log.Warn("queue: deleted by the administrator, no report sent", "id", id, "from", from, "pending", pending)
	}
	return err
}

// appendRecord writes a state record at end (over a torn one), durably.
func appendRecord(path string, end int64, rec []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.WriteAt(rec, end); err != nil {
		return err
	}
	return unix.Fdatasync(int(f.Fd()))
}
