package agent

import (
	"sync"
	"time"
)

// jumpClock is a Clock a test moves by hand.
type jumpClock struct {
	mu  sync.Mutex
	now time.Time
}

func newJumpClock() *jumpClock {
	return &jumpClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *jumpClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *jumpClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

func (c *jumpClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}
