package smtpd

import (
	"context"
	"errors"
	"io"
	"strconv"
	"sync"

	"mailfountain.dev/mailfountain/runtime/queue"
)

// recordingQueue stands for the outbound queue: in memory, idempotent by
// key as the real one is, and scripted to fail its next Enqueue calls.
type recordingQueue struct {
	mu   sync.Mutex
	msgs []queued
	// fail is how many of the next Enqueue calls fail.
	fail int
	// calls counts the calls, failed ones included.
	calls int
}

type queued struct {
	id  string
	env queue.Envelope
	msg string
}

var errQueueFull = errors.New("queue disk full")

func (q *recordingQueue) Enqueue(ctx context.Context, env queue.Envelope, msg io.Reader) (string, error) {
	b, err := io.ReadAll(msg)
	if err != nil {
		return "", err
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.calls++
	if q.fail > 0 {
		q.fail--
		return "", errQueueFull
	}
	for _, m := range q.msgs {
		if env.Key != "" && m.env.Key == env.Key {
			return m.id, nil
		}
	}
	id := "q" + strconv.Itoa(len(q.msgs)+1)
	q.msgs = append(q.msgs, queued{id, env, string(b)})
	return id, nil
}

// failNext makes the next n calls fail.
func (q *recordingQueue) failNext(n int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.fail = n
}

// queued returns a copy of what the queue holds.
func (q *recordingQueue) queued() []queued {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]queued(nil), q.msgs...)
}
