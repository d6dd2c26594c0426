package queue

import (
	"path/filepath"
	"time"
)

// Envelope is what Enqueue takes with a message.
type Envelope struct {
	// From is the reverse path; "" is the null reverse path <>.
	From string
	// Rcpts are recipients outside the box that the client named: they
	// are sent with From as the reverse path.
	Rcpts []string
	// Forward are outside targets of redirections: they are sent with
	// From rewritten by SRS, so that SPF passes at the destination and a
	// bounce finds the sender (From kept as is when it is <> or of a
	// domain of the box).
	Forward []string
	// Key names the message for idempotence: the same message sent again
	// by a client that lost the 250 has the same key, and an Enqueue with
	// the key of a message already queued adds nothing.
	Key string
}

// State is where a message stands.
type State string

const (
	Waiting State = "waiting" // to be tried (new, or deferred until Next)
	Held    State = "held"    // held by the administrator: not tried until released
)

// Info is what `mfapply queue list` shows of a message.
type Info struct {
	ID      string    `json:"id"`
	From    string    `json:"from"`
	Size    int64     `json:"size"`
	Created time.Time `json:"created"`
	State   State     `json:"state"`
	// Next is the time of the next attempt (zero when held).
	Next       time.Time   `json:"next,omitzero"`
	Recipients []Recipient `json:"recipients"`
}

// Recipient is one recipient of a queued message.
type Recipient struct {
	Addr string `json:"addr"`
	// From is the reverse path it is sent with (From, or its SRS form).
	From     string `json:"from"`
	Status   string `json:"status"` // "pending", "delivered", "bounced"
	Attempts int    `json:"attempts"`
	// LastError is the last answer or failure, "" before any attempt.
	LastError string `json:"last_error,omitempty"`
	// ViaRelay: the destination refused the box's address and the
	// recipient is now tried through the smarthost.
	ViaRelay bool `json:"via_relay,omitempty"`
}

// DirName is the queue's directory in the data directory.
const DirName = "queue"

// Dir is the queue's directory of the data directory dataDir (DATA/queue).
func Dir(dataDir string) string { return filepath.Join(dataDir, DirName) }
