package dhcpd

import "time"

// Limits on the requests answered, per fixed window: a device asks a few
// times a minute at most (DISCOVER retries, a REQUEST, a renewal), so
// more is a broken or hostile client; the total bounds the work and the
// writes of the leases' file whatever the number of MACs a flood uses.
const (
	limitWindow = 10 * time.Second
	perMAC      = 12
	perWindow   = 600
)

// limiter counts requests per MAC in the current window. Its map holds at
// most perWindow entries: a request over the total makes none.
type limiter struct {
	start time.Time
	total int
	byMAC map[string]int
}

func newLimiter() *limiter { return &limiter{byMAC: map[string]int{}} }

// allow counts a request of mac at now and says whether to answer it.
func (l *limiter) allow(mac string, now time.Time) bool {
	if now.Sub(l.start) >= limitWindow || now.Before(l.start) {
		l.start, l.total = now, 0
		clear(l.byMAC)
	}
	if l.total >= perWindow || l.byMAC[mac] >= perMAC {
		return false
	}
	l.total++
	l.byMAC[mac]++
	return true
}
