package loop

import (
	"testing"
	"time"
)

// TestNextTickSkipsMissedTicks checks the processing-time schedule: the
// next tick is on the interval grid, after now, and finding it takes no
// longer for an hour of missed 1ns ticks than for one (the loop that
// stepped through them kept a query from stopping for minutes).
func TestNextTickSkipsMissedTicks(t *testing.T) {
	t0 := time.Now()
	ms := time.Millisecond
	for _, c := range []struct {
		next, now, want time.Duration // from t0
	}{
		{5 * ms, 0, 5 * ms},                  // not due yet
		{0, 0, 1 * ms},                       // due now
		{0, 2500 * time.Microsecond, 3 * ms}, // two ticks missed
		{0, 3 * ms, 4 * ms},
	} {
		if got := nextTick(t0.Add(c.next), t0.Add(c.now), ms); !got.Equal(t0.Add(c.want)) {
			t.Errorf("nextTick(t0+%s, t0+%s, 1ms) = t0+%s, want t0+%s", c.next, c.now, got.Sub(t0), c.want)
		}
	}
	done := make(chan time.Time)
	go func() { done <- nextTick(t0, t0.Add(time.Hour), time.Nanosecond) }()
	select {
	case got := <-done:
		if want := t0.Add(time.Hour + time.Nanosecond); !got.Equal(want) {
			t.Fatalf("after an hour of missed 1ns ticks: t0+%s, want t0+%s", got.Sub(t0), want.Sub(t0))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("nextTick did not return within 10s for an hour of missed 1ns ticks")
	}
}
