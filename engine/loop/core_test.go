package loop

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"

	"github.com/gostream/gostream/kafkasrc"
)

// TestCore runs the scripts in testdata. Each script starts a Core with
// "new", then gives it one event per command; the expected output is the
// actions the event called for, one a line.
//
//	new trigger=default|processing-time|once|available-now [interval=MS]
//	    [starting=earliest|latest] [max-offsets=N] [min-partitions=N] [fail-on-data-loss]
//	    [batch-bytes=N group-bytes=N] [last-committed=N] [end=OFFSETS]
//	    [rerun=N rerun-start=OFFSETS rerun-end=OFFSETS]
//	start at=MS
//	listed at=MS earliest=OFFSETS latest=OFFSETS | listed at=MS err=TEXT
//	buffered at=MS [offsets=OFFSETS]
//	timer at=MS | arrived at=MS | fail at=MS err=TEXT
//	logged|synced|committed at=MS batch=N [err=TEXT]
//	mapped at=MS batch=N records=N [err=TEXT]
//	output at=MS batch=N [groups=N bytes=N] [err=TEXT]
//
// err=canceled is context.Canceled, any other TEXT a new error with that
// text. Times are milliseconds since the Unix epoch; OFFSETS are topic/partition=offset
// pairs separated by commas (logs/0=10,logs/1=4). An offsets entry prints as
// its batch id and each partition's [start,end).
func TestCore(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		var c *Core
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			if d.Cmd == "new" {
				c = NewCore(scriptConfig(t, d))
				return ""
			}
			if c == nil {
				d.Fatalf(t, "%s before new", d.Cmd)
			}
			var at int64
			d.ScanArgs(t, "at", &at)
			var out strings.Builder
			for _, a := range c.Step(time.UnixMilli(at), scriptEvent(t, d)) {
				fmt.Fprintln(&out, describe(a))
			}
			return out.String()
		})
	})
}

func scriptConfig(t *testing.T, d *datadriven.TestData) (Config, Recovery) {
	var cfg Config
	var kind string
	d.ScanArgs(t, "trigger", &kind)
	switch kind {
	case "default":
	case "processing-time":
		var interval int64
		d.ScanArgs(t, "interval", &interval)
		cfg.Trigger = Trigger{Kind: ProcessingTime, Interval: time.Duration(interval) * time.Millisecond}
	case "once":
		cfg.Trigger.Kind = Once
	case "available-now":
		cfg.Trigger.Kind = AvailableNow
	default:
		d.Fatalf(t, "unknown trigger %q", kind)
	}
	starting := "earliest"
	d.MaybeScanArgs(t, "starting", &starting)
	var err error
	if cfg.Starting, err = kafkasrc.ParseStartingOffsets(starting); err != nil {
		d.Fatalf(t, "%v", err)
	}
	d.MaybeScanArgs(t, "max-offsets", &cfg.MaxOffsetsPerTrigger)
	d.MaybeScanArgs(t, "min-partitions", &cfg.MinPartitions)
	cfg.FailOnDataLoss = d.HasArg("fail-on-data-loss")
	d.MaybeScanArgs(t, "batch-bytes", &cfg.Sizer.BatchBytes)
	d.MaybeScanArgs(t, "group-bytes", &cfg.Sizer.GroupBytes)

	rec := Recovery{LastCommitted: -1}
	d.MaybeScanArgs(t, "last-committed", &rec.LastCommitted)
	rec.End = scanOffsets(t, d, "end")
	var rerun int64
	if d.MaybeScanArgs(t, "rerun", &rerun) {
		rec.Rerun = &OffsetsEntry{BatchID: rerun, Start: scanOffsets(t, d, "rerun-start"), End: scanOffsets(t, d, "rerun-end")}
	}
	return cfg, rec
}

func scriptEvent(t *testing.T, d *datadriven.TestData) Event {
	var (
		id     int64
		errMsg string
		err    error
	)
	if d.MaybeScanArgs(t, "err", &errMsg) {
		err = errors.New(errMsg)
		if errMsg == "canceled" {
			err = context.Canceled
		}
	}
	switch d.Cmd {
	case "logged", "mapped", "output", "synced", "committed":
		d.ScanArgs(t, "batch", &id)
	}
	switch d.Cmd {
	case "start":
		return Start{}
	case "listed":
		return OffsetsListed{Earliest: scanOffsets(t, d, "earliest"), Latest: scanOffsets(t, d, "latest"), Err: err}
	case "buffered":
		return BufferedRead{Buffered: scanOffsets(t, d, "offsets")}
	case "timer":
		return TimerFired{}
	case "arrived":
		return DataArrived{}
	case "fail":
		return Failed{Err: err}
	case "logged":
		return OffsetsLogged{Batch: id, Err: err}
	case "mapped":
		ev := BatchMapped{Batch: id, Err: err}
		d.MaybeScanArgs(t, "records", &ev.Records)
		return ev
	case "output":
		ev := BatchOutput{Batch: id, Err: err}
		d.MaybeScanArgs(t, "groups", &ev.Groups)
		d.MaybeScanArgs(t, "bytes", &ev.ExchangeBytes)
		return ev
	case "synced":
		return BatchSynced{Batch: id, Err: err}
	case "committed":
		return BatchCommitted{Batch: id, Err: err}
	}
	d.Fatalf(t, "unknown command %q", d.Cmd)
	return nil
}

// scanOffsets parses argument key, "logs/0=10,logs/1=4"; nil if absent.
func scanOffsets(t *testing.T, d *datadriven.TestData, key string) kafkasrc.Offsets {
	arg, ok := d.Arg(key)
	if !ok {
		return nil
	}
	o := kafkasrc.Offsets{}
	for _, v := range arg.Vals {
		for pair := range strings.SplitSeq(v, ",") {
			tp, off, ok1 := strings.Cut(pair, "=")
			topic, p, ok2 := strings.Cut(tp, "/")
			part, err1 := strconv.ParseInt(p, 10, 32)
			n, err2 := strconv.ParseInt(off, 10, 64)
			if !ok1 || !ok2 || err1 != nil || err2 != nil {
				d.Fatalf(t, "%s: bad offsets %q (want topic/partition=offset)", key, pair)
			}
			o.Set(topic, int32(part), n)
		}
	}
	return o
}

// describe prints an action as the scripts expect it.
func describe(a Action) string {
	switch a := a.(type) {
	case ListOffsets:
		return "list offsets"
	case ReadBuffered:
		return "read buffered"
	case LogOffsets:
		return "log offsets " + entry(a.Entry)
	case MapBatch:
		s := fmt.Sprintf("map %d", a.Entry.BatchID)
		if a.Rerun {
			s += " (re-run)"
		}
		for _, r := range a.Ranges {
			s += " " + r.String()
		}
		return s
	case OutputBatch:
		return fmt.Sprintf("output %d", a.Batch)
	case SyncBatch:
		return fmt.Sprintf("sync %d", a.Batch)
	case CommitBatch:
		s := fmt.Sprintf("commit %d", a.Batch)
		if a.Next != nil {
			s += " + offsets " + entry(*a.Next)
		}
		return s
	case FollowFrom:
		return "follow " + offsets(a.From)
	case WaitUntil:
		return fmt.Sprintf("wait until %d", a.At.UnixMilli())
	case WaitForData:
		return fmt.Sprintf("wait for data until %d", a.Until.UnixMilli())
	case Warn:
		return "warn: " + a.Message
	case ReportProgress:
		r := a.Report
		s := fmt.Sprintf("report %d: records=%d start=%d since-last=%d latest=%s\n  ",
			r.Entry.BatchID, r.Records, r.Start.UnixMilli(), r.SinceLast.Milliseconds(), offsets(r.Latest))
		for _, k := range []string{"latestOffset", "map", "walCommit", "commitOffsets", "triggerExecution"} {
			s += fmt.Sprintf(" %s=%d", k, r.Durations[k])
		}
		return s
	case Stop:
		if a.Err != nil {
			return "stop: " + a.Err.Error()
		}
		return "stop"
	}
	return fmt.Sprintf("unknown action %T", a)
}

// entry prints an offsets entry as its batch id and each partition's
// [start,end).
func entry(e OffsetsEntry) string {
	s := strconv.FormatInt(e.BatchID, 10)
	for _, tp := range partitions(e.End) {
		from, _ := e.Start.Get(tp.topic, tp.p)
		s += fmt.Sprintf(" %s/%d[%d,%d)", tp.topic, tp.p, from, e.End[tp.topic][tp.p])
	}
	return s
}

func offsets(o kafkasrc.Offsets) string {
	if o == nil {
		return "none"
	}
	var parts []string
	for _, tp := range partitions(o) {
		parts = append(parts, fmt.Sprintf("%s/%d=%d", tp.topic, tp.p, o[tp.topic][tp.p]))
	}
	return strings.Join(parts, ",")
}

type topicPartition struct {
	topic string
	p     int32
}

func partitions(o kafkasrc.Offsets) []topicPartition {
	var tps []topicPartition
	for t, parts := range o {
		for p := range parts {
			tps = append(tps, topicPartition{t, p})
		}
	}
	slices.SortFunc(tps, func(a, b topicPartition) int {
		if c := strings.Compare(a.topic, b.topic); c != 0 {
			return c
		}
		return int(a.p - b.p)
	})
	return tps
}
