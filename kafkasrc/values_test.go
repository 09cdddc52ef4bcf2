package kafkasrc

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// testRecord is a record for v2Batch; a nil value is a tombstone.
type testRecord struct {
	key, value []byte
	headers    int
}

// v2Batch encodes an uncompressed v2 record batch of recs at offsets base,
// base+1, ... with the given batch attributes.
func v2Batch(base int64, attrs uint16, recs ...testRecord) []byte {
	var body []byte
	for i, r := range recs {
		rec := []byte{0}                  // attributes
		rec = binary.AppendVarint(rec, 7) // timestamp delta
		rec = binary.AppendVarint(rec, int64(i))
		for _, b := range [][]byte{r.key, r.value} {
			if b == nil {
				rec = binary.AppendVarint(rec, -1)
			} else {
				rec = append(binary.AppendVarint(rec, int64(len(b))), b...)
			}
		}
		rec = binary.AppendVarint(rec, int64(r.headers))
		for range r.headers {
			rec = append(binary.AppendVarint(rec, 1), 'h')
			rec = append(binary.AppendVarint(rec, 2), "hv"...)
		}
		body = append(binary.AppendVarint(body, int64(len(rec))), rec...)
	}
	b := make([]byte, batchHeaderLen, batchHeaderLen+len(body))
	binary.BigEndian.PutUint64(b, uint64(base))
	binary.BigEndian.PutUint32(b[8:], uint32(batchHeaderLen-12+len(body)))
	b[batchMagic] = 2
	binary.BigEndian.PutUint16(b[batchAttributes:], attrs)
	binary.BigEndian.PutUint32(b[batchLastDelta:], uint32(len(recs)-1))
	binary.BigEndian.PutUint32(b[batchRecordCount:], uint32(len(recs)))
	b = append(b, body...)
	binary.BigEndian.PutUint32(b[batchCRC:], crc32.Checksum(b[batchAttributes:], castagnoli))
	return b
}

// v1Message encodes a v1 message (the old format) at offset off.
func v1Message(off int64, value string) []byte {
	body := []byte{1, 0} // magic, attributes
	body = binary.BigEndian.AppendUint64(body, 1700000000000)
	body = binary.BigEndian.AppendUint32(body, 0xffffffff) // null key
	body = binary.BigEndian.AppendUint32(body, uint32(len(value)))
	body = append(body, value...)
	b := binary.BigEndian.AppendUint64(nil, uint64(off))
	b = binary.BigEndian.AppendUint32(b, uint32(4+len(body)))
	b = binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(body))
	return append(b, body...)
}

// decodeAll runs a valueDecoder for r over batches; values as readDirect.
func decodeAll(t *testing.T, r Range, batches []byte) (vals []string, pos int64, err error) {
	t.Helper()
	complete, _ := completeBatches(batches, r.From)
	d := valueDecoder{r: r, pos: r.From, decompress: newDecompressor(), bufs: new(sync.Pool)}
	err = d.decode(complete, collectValues(&vals))
	return vals, d.pos, err
}

func TestValueDecoder(t *testing.T) {
	shapes := v2Batch(10, 0,
		testRecord{value: []byte("plain")},
		testRecord{key: []byte("k"), value: nil}, // a tombstone
		testRecord{key: []byte{}, value: []byte{}},
		testRecord{value: []byte("with headers"), headers: 2})
	marker := v2Batch(14, attrControl, testRecord{key: []byte{0, 0, 0, 1}, value: []byte{0, 0, 0, 0, 0, 0}})
	next := v2Batch(15, 0, testRecord{value: []byte("after the marker")})
	legacy := v1Message(16, "old format")
	all := slices.Concat(shapes, marker, next, legacy)
	for _, tc := range []struct {
		r    Range
		want []string
		pos  int64
	}{
		{Range{"t", 0, 10, 17}, []string{"plain", "<null>", "", "with headers", "after the marker", "old format"}, 17},
		{Range{"t", 0, 11, 13}, []string{"<null>", ""}, 14}, // a range inside a batch; pos passes the batch
		{Range{"t", 0, 14, 16}, []string{"after the marker"}, 16},
		{Range{"t", 0, 16, 17}, []string{"old format"}, 17},
	} {
		vals, pos, err := decodeAll(t, tc.r, all)
		if err != nil || !slices.Equal(vals, tc.want) || pos != tc.pos {
			t.Errorf("range %s: got %q, pos %d, %v; want %q, pos %d", tc.r, vals, pos, err, tc.want, tc.pos)
		}
	}

	// completeBatches leaves out a batch the broker cut short.
	cut := slices.Concat(shapes, next[:len(next)-3])
	if got, end := completeBatches(cut, 10); len(got) != len(shapes) || end != 14 {
		t.Errorf("completeBatches kept %d of %d bytes, next %d; want %d, 14", len(got), len(cut), end, len(shapes))
	}
}

func TestValueDecoderCorrupt(t *testing.T) {
	flipped := v2Batch(5, 0, testRecord{value: []byte("hello")})
	flipped[len(flipped)-1] ^= 1
	badLength := v2Batch(5, 0, testRecord{value: []byte("hello")})
	binary.BigEndian.PutUint32(badLength[batchRecordCount:], 2) // claims a record it lacks
	binary.BigEndian.PutUint32(badLength[batchCRC:], crc32.Checksum(badLength[batchAttributes:], castagnoli))
	badCodec := v2Batch(5, 3, testRecord{value: []byte("not lz4")}) // says lz4, holds plain records
	for name, tc := range map[string]struct {
		batch []byte
		why   string
	}{
		"crc":    {flipped, "CRC mismatch"},
		"length": {badLength, "bad record length"},
		"codec":  {badCodec, "lz4"},
	} {
		_, _, err := decodeAll(t, Range{"t", 2, 0, 10}, tc.batch)
		if err == nil || !strings.Contains(err.Error(), tc.why) || !strings.Contains(err.Error(), "t/2") || !strings.Contains(err.Error(), "offset 5") {
			t.Errorf("%s: err = %v, want a corrupt batch error naming t/2, offset 5 and %q", name, err, tc.why)
		}
	}
}

// FuzzValueDecoder feeds the decoder arbitrary fetched bytes: it must
// report corruption, never panic or deliver more values than the range
// has offsets.
func FuzzValueDecoder(f *testing.F) {
	f.Add(v2Batch(0, 0, testRecord{value: []byte("a b")}, testRecord{key: []byte("k")}))
	f.Add(slices.Concat(v2Batch(3, attrControl, testRecord{}), v1Message(4, "x")))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := Range{"t", 0, 1, 3}
		complete, _ := completeBatches(b, r.From)
		d := valueDecoder{r: r, pos: r.From, decompress: newDecompressor(), bufs: new(sync.Pool)}
		n := 0
		_ = d.decode(complete, func(vs [][]byte, _ func()) error {
			if n += len(vs); int64(n) > r.Len() {
				t.Fatalf("delivered %d values from %s", n, r)
			}
			return nil
		})
	})
}

// TestReadValuesReusesMemory reads lz4 batches, releasing each slice of
// values once copied, so that later batches decompress into the memory of
// earlier ones: every value must still read back as produced.
func TestReadValuesReusesMemory(t *testing.T) {
	ctx := testCtx(t)
	c := newFake(t, "logs", 1)
	for i := range 20 { // 20 produce requests: 20 batches at least
		produceN(t, c.ListenAddrs(), "logs", 0, i*100, 100, kgo.ProducerBatchCompression(kgo.Lz4Compression()))
	}
	s := newTestSource(t, c.ListenAddrs(), map[string]string{"max.partition.fetch.bytes": "2048"})
	for _, r := range []Range{{"logs", 0, 0, 2000}, {"logs", 0, 150, 1234}} {
		got, err := readDirect(ctx, s, r)
		if want := values("p0-", int(r.From), int(r.Until)); err != nil || !slices.Equal(got, want) {
			t.Fatalf("range %s: got %d values (%q...), %v; want %d", r, len(got), head(got), err, len(want))
		}
	}
}

// TestReadValuesKeptSlices checks that a ReadValues callback may keep the
// slices it is given, not only their values, until it releases them, with
// every codec.
func TestReadValuesKeptSlices(t *testing.T) {
	c := newFake(t, "kept", int32(len(keptCodecs)))
	testReadValuesKeptSlices(t, c.ListenAddrs(), "kept")
}

// keptCodecs are the codecs testReadValuesKeptSlices produces with, one
// partition each.
var keptCodecs = []kgo.CompressionCodec{kgo.NoCompression(), kgo.GzipCompression(), kgo.SnappyCompression(), kgo.Lz4Compression(), kgo.ZstdCompression()}

// testReadValuesKeptSlices produces to partition i of topic (which has
// len(keptCodecs) partitions) with keptCodecs[i], in 20 batches at least,
// and reads ranges of each partition in small fetches, releasing each slice
// of values only once three later slices arrived: every slice must still
// hold the values it came with.
func testReadValuesKeptSlices(t *testing.T, addrs []string, topic string) {
	ctx := testCtx(t)
	for p, codec := range keptCodecs {
		for i := range 20 {
			produceN(t, addrs, topic, int32(p), i*100, 100, kgo.ProducerBatchCompression(codec))
		}
	}
	s := newTestSource(t, addrs, map[string]string{"max.partition.fetch.bytes": "2048"})
	type kept struct {
		vals    [][]byte
		want    []string
		release func()
	}
	for p := range keptCodecs {
		for _, r := range []Range{{topic, int32(p), 0, 2000}, {topic, int32(p), 150, 1234}} {
			var held []kept
			var got []string
			check := func(k kept) {
				for i, v := range k.vals {
					if string(v) != k.want[i] {
						t.Fatalf("range %s: a kept slice's value %d reads %q, was %q", r, i, v, k.want[i])
					}
				}
				k.release()
			}
			err := s.ReadValues(ctx, r, func(vals [][]byte, release func()) error {
				k := kept{vals: vals, release: release}
				for _, v := range vals {
					k.want = append(k.want, string(v))
				}
				got = append(got, k.want...)
				if held = append(held, k); len(held) > 3 {
					check(held[0])
					held = held[1:]
				}
				return nil
			})
			for _, k := range held {
				check(k)
			}
			if want := values(fmt.Sprintf("p%d-", p), int(r.From), int(r.Until)); err != nil || !slices.Equal(got, want) {
				t.Fatalf("range %s: got %d values (%q...), %v; want %d", r, len(got), head(got), err, len(want))
			}
		}
	}
}
