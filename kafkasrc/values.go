package kafkasrc

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"sync"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// ReadValues delivers the value of every record with r.From <= offset <
// r.Until (nil for a tombstone), in offset order, to fn in slices. It is
// ReadRange for a caller that needs values only, such as a query that reads
// CAST(value AS STRING) and nothing else: it sends Fetch requests of its own
// and decodes the record batches itself, without building a kgo.Record per
// record. fn may keep the slice and its values until it calls release (at
// most once, from any goroutine), which lets their memory hold the values
// of a later fetch; values never released are garbage-collected as usual.
//
// Otherwise it behaves as ReadRange: transaction markers and compaction gaps
// take offsets without a value, offsets deleted before the read reached
// them are data loss (Config.FailOnDataLoss), and it retries brokers that do not answer and partitions
// without a leader for up to Config.RetryTimeout, and returns ctx's error
// when ctx ends. Each call
// fetches from r.From: it uses none of ReadRange's readers, so a caller
// alternates the two only at the cost of fetching again. Under
// read_committed, where aborted transactions must be left out, it reads
// through ReadRange.
func (s *Source) ReadValues(ctx context.Context, r Range, fn func(values [][]byte, release func()) error) error {
	if s.cc.readCommitted {
		return s.ReadRange(ctx, r, func(recs []*kgo.Record) error {
			vals := make([][]byte, 0, len(recs))
			for _, rec := range recs {
				vals = append(vals, rec.Value)
			}
			return fn(vals, noRelease)
		})
	}
	if err := r.check(); err != nil || r.From == r.Until {
		return err
	}
	if err := s.beginRead(); err != nil {
		return err
	}
	defer s.reads.Done()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(s.closing, cancel)
	defer stop()

	fetched := make(chan fetchResult, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(fetched)
		s.fetchLoop(ctx, r, fetched)
	}()
	defer wg.Wait()
	defer cancel() // runs before wg.Wait: the fetch loop stops first
	d := valueDecoder{r: r, pos: r.From, decompress: s.decompressor, bufs: &s.bufs}
	for {
		var res fetchResult
		var ok bool
		select {
		case res, ok = <-fetched:
		case <-ctx.Done():
		}
		switch {
		case s.closing.Err() != nil:
			return ErrClosed
		case ctx.Err() != nil:
			return ctx.Err()
		case !ok:
			return nil // the rest of the range was deleted
		case res.err != nil:
			return res.err
		}
		// Records below the fetch offset are skipped: when offsets were
		// deleted, the fetch moved on to the log start, which may lie
		// inside a batch.
		d.pos = max(d.pos, res.from)
		if err := d.decode(res.batches, fn); err != nil || d.pos >= r.Until {
			return err
		}
	}
}

// check validates the range's offsets.
func (r Range) check() error {
	if r.From < 0 || r.Until < r.From {
		return errorf(ErrInvalidOffsets, "kafka: invalid range %s: want 0 <= from <= until", r)
	}
	return nil
}

// beginRead registers a read that Close waits for, unless the Source is
// closed.
func (s *Source) beginRead() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.closed {
		return ErrClosed
	}
	s.reads.Add(1)
	return nil
}

// fetchResult is the complete record batches of one Fetch response from
// offset from, or the error that ended the fetch loop.
type fetchResult struct {
	from    int64
	batches []byte
	err     error
}

// fetchLoop fetches r from r.From on, sending each response's complete
// record batches to out while the next fetch is on its way, until it has
// fetched past r.Until or ctx ends. It retries what may pass (a leader
// moving, a broker restarting) as Admin calls do, and sends the first
// error that will not, or the one it gives up with.
func (s *Source) fetchLoop(ctx context.Context, r Range, out chan<- fetchResult) {
	pos := r.From
	var retry *retrier // while fetches fail
	for pos < r.Until {
		batches, next, err := s.fetchOnce(ctx, r, pos)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			if retry == nil {
				retry = s.admin.retrier("reading "+r.String(), []string{r.Topic})
			}
			if err := retry.wait(ctx, err); err != nil {
				select {
				case out <- fetchResult{err: err}:
				case <-ctx.Done():
				}
				return
			}
			continue
		}
		retry = nil
		if len(batches) > 0 {
			select {
			case out <- fetchResult{from: pos, batches: batches}:
			case <-ctx.Done():
				return
			}
		}
		pos = max(pos, next)
	}
}

// leader is what a fetch of a partition needs to know of its leader.
type leader struct {
	id      int32
	epoch   int32
	topicID [16]byte
}

// leaderOf returns the leader of tp, from the cache or the metadata.
func (s *Source) leaderOf(ctx context.Context, tp topicPartition) (leader, error) {
	s.leaders.Lock()
	l, ok := s.leaders.m[tp]
	s.leaders.Unlock()
	if ok {
		return l, nil
	}
	req := kmsg.NewPtrMetadataRequest()
	t := kmsg.NewMetadataRequestTopic()
	t.Topic = kmsg.StringPtr(tp.topic)
	req.Topics = append(req.Topics, t)
	resp, err := req.RequestWith(ctx, s.admin.cl)
	if err != nil {
		return leader{}, err
	}
	for _, mt := range resp.Topics {
		if mt.Topic == nil || *mt.Topic != tp.topic {
			continue
		}
		if err := kerr.ErrorForCode(mt.ErrorCode); errors.Is(err, kerr.UnknownTopicOrPartition) {
			return leader{}, s.admin.unknownTopic(tp.topic)
		} else if err != nil {
			return leader{}, err
		}
		for _, p := range mt.Partitions {
			if p.Partition != tp.partition {
				continue
			}
			if err := kerr.ErrorForCode(p.ErrorCode); err != nil && p.Leader < 0 {
				return leader{}, err
			}
			if p.Leader < 0 {
				return leader{}, kerr.LeaderNotAvailable
			}
			l = leader{id: p.Leader, epoch: p.LeaderEpoch, topicID: mt.TopicID}
			s.leaders.Lock()
			s.leaders.m[tp] = l
			s.leaders.Unlock()
			return l, nil
		}
		return leader{}, errorf(ErrUnknownTopic, "kafka: topic %q has no partition %d (%d partitions)", tp.topic, tp.partition, len(mt.Partitions))
	}
	return leader{}, s.admin.unknownTopic(tp.topic)
}

// forgetLeader drops tp's cached leader: the next fetch asks the metadata.
func (s *Source) forgetLeader(tp topicPartition) {
	s.leaders.Lock()
	delete(s.leaders.m, tp)
	s.leaders.Unlock()
}

// fetchOnce fetches r's partition at pos from its leader. It returns the
// response's complete record batches and the offset after them (pos if
// there are none), or, if the offsets from pos on were deleted, no batches
// and the log start offset.
func (s *Source) fetchOnce(ctx context.Context, r Range, pos int64) (batches []byte, next int64, err error) {
	tp := topicPartition{r.Topic, r.Partition}
	l, err := s.leaderOf(ctx, tp)
	if err != nil {
		return nil, pos, err
	}
	req := kmsg.NewPtrFetchRequest()
	req.MaxWaitMillis = int32(s.cc.fetch.maxWait.Milliseconds())
	req.MinBytes, req.MaxBytes = s.cc.fetch.minBytes, s.cc.fetch.maxBytes
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic, rt.TopicID = r.Topic, l.topicID
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.Partition, rp.FetchOffset, rp.PartitionMaxBytes = r.Partition, pos, s.cc.fetch.partitionMaxBytes
	rp.CurrentLeaderEpoch, rp.LogStartOffset = l.epoch, -1
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	kresp, err := s.admin.cl.Broker(int(l.id)).Request(ctx, req)
	if err != nil {
		s.forgetLeader(tp)
		return nil, pos, err
	}
	resp := kresp.(*kmsg.FetchResponse)
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		return nil, pos, err
	}
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		return nil, pos, fmt.Errorf("kafka: fetching %s: the response holds %d topics, not the one asked for", r, len(resp.Topics))
	}
	p := &resp.Topics[0].Partitions[0]
	switch err := kerr.ErrorForCode(p.ErrorCode); {
	case err == nil:
	case errors.Is(err, kerr.OffsetOutOfRange):
		earliest, _, lerr := s.admin.offsets(ctx, []string{r.Topic})
		if lerr != nil {
			return nil, pos, lerr
		}
		if start, ok := earliest[r.Topic][r.Partition]; ok && start > pos {
			// Deleted before the read reached them.
			if err := s.dataLost(r, pos, min(start, r.Until), deletedBeforeRead); err != nil {
				return nil, pos, err
			}
			return nil, start, nil
		}
		// Beyond the end of the leader's log: a new leader that has not
		// caught up yet.
		s.forgetLeader(tp)
		return nil, pos, fmt.Errorf("offset %d is beyond the end of the leader's log (%v): %w", pos, err, kerr.OffsetNotAvailable)
	case errors.Is(err, kerr.UnknownTopicOrPartition), errors.Is(err, kerr.UnknownTopicID):
		s.forgetLeader(tp) // the next leaderOf tells whether the topic is gone
		return nil, pos, kerr.LeaderNotAvailable
	default:
		s.forgetLeader(tp)
		return nil, pos, err
	}
	batches, next = completeBatches(p.RecordBatches, pos)
	return batches, next, nil
}

// completeBatches returns the complete record batches (or message sets) of
// a fetched partition, leaving out a last one the broker cut short at the
// fetch's size limit, and the offset after them.
func completeBatches(b []byte, pos int64) ([]byte, int64) {
	n := 0
	for len(b)-n >= 17 {
		size := 12 + int(int32(binary.BigEndian.Uint32(b[n+8:])))
		if size < 17 || size > len(b)-n {
			break
		}
		first := int64(binary.BigEndian.Uint64(b[n:]))
		last := first // a v0 or v1 message's offset is its last
		if b[n+16] >= 2 {
			if size < 27 {
				break
			}
			last += int64(int32(binary.BigEndian.Uint32(b[n+23:])))
		}
		pos = max(pos, last+1)
		n += size
	}
	return b[:n], pos
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Record batch v2 layout (Kafka's DefaultRecordBatch): offsets of the
// header fields, and the attribute bits read here.
const (
	batchMagic       = 16
	batchCRC         = 17
	batchAttributes  = 21
	batchLastDelta   = 23
	batchRecordCount = 57
	batchHeaderLen   = 61

	attrCodec   = 0x07
	attrControl = 0x20
)

// valueDecoder decodes the values of a range's records from fetched record
// batches.
type valueDecoder struct {
	r          Range
	pos        int64 // the next offset to deliver
	decompress *decompressor
	bufs       *sync.Pool // of *valueBuf; released by the caller
}

// valueBuf is the memory of one slice of values that ReadValues delivers:
// the slice, and the records it decompressed, which the values point into.
type valueBuf struct {
	records []byte
	vals    [][]byte
}

func noRelease() {}

// decode delivers the values in batches from d.pos up to d.r.Until and
// advances d.pos past them.
func (d *valueDecoder) decode(batches []byte, fn func([][]byte, func()) error) error {
	for len(batches) > 0 && d.pos < d.r.Until {
		size := 12 + int(int32(binary.BigEndian.Uint32(batches[8:])))
		batch := batches[:size] // completeBatches checked the size
		batches = batches[size:]
		var err error
		if batch[batchMagic] < 2 {
			err = d.legacy(batch, fn)
		} else {
			err = d.batch(batch, fn)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// corrupt describes a record batch that cannot be decoded.
func (d *valueDecoder) corrupt(base int64, why string) error {
	return fmt.Errorf("kafka: reading %s: the record batch at offset %d is corrupt (%s); if fetching it again fails alike, the broker's log segment is damaged", d.r, base, why)
}

// batch decodes one v2 record batch.
func (d *valueDecoder) batch(batch []byte, fn func([][]byte, func()) error) error {
	base := int64(binary.BigEndian.Uint64(batch))
	if len(batch) < batchHeaderLen {
		return d.corrupt(base, "shorter than its header")
	}
	if crc32.Checksum(batch[batchAttributes:], castagnoli) != binary.BigEndian.Uint32(batch[batchCRC:]) {
		return d.corrupt(base, "CRC mismatch")
	}
	attrs := binary.BigEndian.Uint16(batch[batchAttributes:])
	last := base + int64(int32(binary.BigEndian.Uint32(batch[batchLastDelta:])))
	if last < d.pos {
		return nil
	}
	if attrs&attrControl != 0 { // a transaction marker takes its offsets
		d.pos = last + 1
		return nil
	}
	buf, _ := d.bufs.Get().(*valueBuf)
	if buf == nil {
		buf = new(valueBuf)
	}
	records, inBuf := batch[batchHeaderLen:], false
	if codec := attrs & attrCodec; codec != 0 {
		out, in, err := d.decompress.into(buf.records, records, kgo.CompressionCodecType(codec))
		if err != nil {
			d.bufs.Put(buf)
			return d.corrupt(base, err.Error())
		}
		records, inBuf = out, in
		if inBuf { // grown, maybe
			buf.records = out[:0]
		}
	}
	vals := buf.vals[:0]
	for n := int32(binary.BigEndian.Uint32(batch[batchRecordCount:])); n > 0; n-- {
		length, k := binary.Varint(records)
		if k <= 0 || length < 0 || length > int64(len(records)-k) {
			return d.corrupt(base, "bad record length")
		}
		rec := records[k : k+int(length)]
		records = records[k+int(length):]
		off, value, ok := recordValue(rec)
		if !ok {
			return d.corrupt(base, "bad record")
		}
		off += base
		if off >= d.r.Until {
			break
		}
		if off >= d.pos {
			vals = append(vals, value)
			d.pos = off + 1
		}
	}
	d.pos = max(d.pos, last+1) // compaction may have removed the last records
	buf.vals = vals[:0]
	release := func() {
		if !inBuf { // the values point into the fetch or franz-go's memory: let it go
			clear(vals)
		}
		d.bufs.Put(buf)
	}
	if len(vals) == 0 {
		release()
		return nil
	}
	return fn(vals, release)
}

// recordValue decodes a v2 record's offset delta and value (nil for a
// null value). It is on the path of every record, so its varints are read
// inline.
func recordValue(rec []byte) (offsetDelta int64, value []byte, ok bool) {
	p := 1              // attributes
	var fields [4]int64 // timestamp delta, offset delta, key length, value length
	for f := range fields {
		if f == 3 && fields[2] > 0 { // skip the key
			if fields[2] > int64(len(rec)-p) {
				return 0, nil, false
			}
			p += int(fields[2])
		}
		var u uint64
		for shift := uint(0); ; shift += 7 {
			if p >= len(rec) || shift > 63 {
				return 0, nil, false
			}
			c := rec[p]
			p++
			u |= uint64(c&0x7f) << shift
			if c < 0x80 {
				break
			}
		}
		fields[f] = int64(u>>1) ^ -int64(u&1) // zigzag
	}
	vlen := fields[3]
	if vlen > int64(len(rec)-p) {
		return 0, nil, false
	}
	if vlen >= 0 {
		value = rec[p : p+int(vlen) : p+int(vlen)]
	}
	return fields[1], value, true
}

// legacy decodes a v0 or v1 message set, which brokers still serve for
// topics written in the old format, with franz-go.
func (d *valueDecoder) legacy(set []byte, fn func([][]byte, func()) error) error {
	fp, _ := kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{Offset: d.pos, Topic: d.r.Topic, Partition: d.r.Partition},
		&kmsg.FetchResponseTopicPartition{Partition: d.r.Partition, RecordBatches: set}, d.decompress, nil)
	if fp.Err != nil {
		return d.corrupt(int64(binary.BigEndian.Uint64(set)), fp.Err.Error())
	}
	vals := make([][]byte, 0, len(fp.Records))
	for _, rec := range fp.Records {
		if rec.Offset >= d.r.Until {
			break
		}
		if rec.Offset >= d.pos {
			vals = append(vals, rec.Value)
			d.pos = rec.Offset + 1
		}
	}
	d.pos = max(d.pos, int64(binary.BigEndian.Uint64(set))+1) // a message set's offset is its last
	if len(vals) == 0 {
		return nil
	}
	return fn(vals, noRelease)
}
