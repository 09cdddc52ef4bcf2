package kafkasrc

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// Special offsets accepted only in startingOffsets JSON, as in Spark.
const (
	// OffsetEarliest (-2) stands for the partition's log start offset.
	OffsetEarliest int64 = -2
	// OffsetLatest (-1) stands for the partition's high watermark.
	OffsetLatest int64 = -1
)

// Offsets maps topic -> partition -> offset. Its text form is Spark's offsets
// JSON, e.g. {"logs":{"0":23,"1":-2}}.
type Offsets map[string]map[int32]int64

// String returns the Spark offsets JSON with topics and partitions sorted, so
// equal Offsets give equal strings. A nil Offsets is "{}".
func (o Offsets) String() string {
	var b strings.Builder
	b.WriteByte('{')
	for i, topic := range sortedKeys(o) {
		if i > 0 {
			b.WriteByte(',')
		}
		name, _ := json.Marshal(topic) // a string always marshals
		b.Write(name)
		b.WriteString(":{")
		parts := o[topic]
		for j, p := range sortedKeys(parts) {
			if j > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `"%d":%d`, p, parts[p])
		}
		b.WriteByte('}')
	}
	b.WriteByte('}')
	return b.String()
}

// MarshalJSON writes String's canonical form, so checkpoints and progress
// reports hold Spark's offsets JSON.
func (o Offsets) MarshalJSON() ([]byte, error) { return []byte(o.String()), nil }

// UnmarshalJSON parses strictly, as ParseOffsets does; null leaves o as it is.
func (o *Offsets) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	parsed, err := ParseOffsets(string(b))
	if err != nil {
		return err
	}
	*o = parsed
	return nil
}

// Get returns the offset of topic/partition and whether it is present.
func (o Offsets) Get(topic string, partition int32) (int64, bool) {
	off, ok := o[topic][partition]
	return off, ok
}

// Set stores the offset of topic/partition, creating the topic map if needed.
// o must not be nil.
func (o Offsets) Set(topic string, partition int32, offset int64) {
	parts := o[topic]
	if parts == nil {
		parts = make(map[int32]int64)
		o[topic] = parts
	}
	parts[partition] = offset
}

// Clone returns a deep copy of o.
func (o Offsets) Clone() Offsets {
	if o == nil {
		return nil
	}
	c := make(Offsets, len(o))
	for topic, parts := range o {
		c[topic] = make(map[int32]int64, len(parts))
		for p, off := range parts {
			c[topic][p] = off
		}
	}
	return c
}

// ParseOffsets parses Spark's offsets JSON, e.g. {"logs":{"0":23,"1":42}}, as
// found in checkpoints. It is strict: duplicate keys, non-decimal or
// out-of-range partitions, non-integer or negative offsets, empty topic names
// and trailing data are errors wrapping ErrInvalidOffsets. The special values
// -2 and -1 are only accepted by ParseStartingOffsets.
func ParseOffsets(s string) (Offsets, error) {
	return parseOffsets(s, false)
}

// offsetsExample is quoted by parse errors.
const offsetsExample = `{"logs":{"0":23,"1":42}}`

func parseOffsets(s string, allowSpecial bool) (Offsets, error) {
	bad := func(format string, args ...any) error {
		return errorf(ErrInvalidOffsets, "kafka: invalid offsets JSON %s: %s (want e.g. %s)",
			quoteShort(s), fmt.Sprintf(format, args...), offsetsExample)
	}
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	if err := expectDelim(dec, '{'); err != nil {
		return nil, bad("%v", err)
	}
	o := make(Offsets)
	for dec.More() {
		topic, err := stringKey(dec)
		if err != nil {
			return nil, bad("%v", err)
		}
		if topic == "" {
			return nil, bad("empty topic name")
		}
		if _, dup := o[topic]; dup {
			return nil, bad("topic %q appears twice", topic)
		}
		if err := expectDelim(dec, '{'); err != nil {
			return nil, bad("topic %q: %v", topic, err)
		}
		parts := make(map[int32]int64)
		o[topic] = parts
		for dec.More() {
			key, err := stringKey(dec)
			if err != nil {
				return nil, bad("topic %q: %v", topic, err)
			}
			p, err := parsePartition(key)
			if err != nil {
				return nil, bad("topic %q: %v", topic, err)
			}
			if _, dup := parts[p]; dup {
				return nil, bad("partition %s/%d appears twice", topic, p)
			}
			tok, err := dec.Token()
			if err != nil {
				return nil, bad("%s/%d: %v", topic, p, err)
			}
			num, ok := tok.(json.Number)
			if !ok {
				return nil, bad("offset of %s/%d is %v, not an integer", topic, p, tokenText(tok))
			}
			off, err := strconv.ParseInt(num.String(), 10, 64)
			if err != nil {
				return nil, bad("offset of %s/%d is %s, not a 64-bit integer", topic, p, num)
			}
			switch {
			case off >= 0:
			case allowSpecial && (off == OffsetEarliest || off == OffsetLatest):
			case allowSpecial:
				return nil, bad("offset of %s/%d is %d; use -2 for earliest, -1 for latest or an offset >= 0", topic, p, off)
			default:
				return nil, bad("offset of %s/%d is %d; offsets are >= 0 (-2/-1 are only allowed in startingOffsets)", topic, p, off)
			}
			parts[p] = off
		}
		if err := expectDelim(dec, '}'); err != nil {
			return nil, bad("topic %q: %v", topic, err)
		}
	}
	if err := expectDelim(dec, '}'); err != nil {
		return nil, bad("%v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, bad("unexpected data after the closing brace")
	}
	return o, nil
}

func expectDelim(dec *json.Decoder, want json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if d, ok := tok.(json.Delim); !ok || d != want {
		return fmt.Errorf("found %s where %q was expected", tokenText(tok), string(want))
	}
	return nil
}

func stringKey(dec *json.Decoder) (string, error) {
	tok, err := dec.Token()
	if err != nil {
		return "", err
	}
	key, ok := tok.(string)
	if !ok {
		return "", fmt.Errorf("found %s where a key was expected", tokenText(tok))
	}
	return key, nil
}

// parsePartition accepts canonical non-negative decimal int32s: "0", "17".
func parsePartition(key string) (int32, error) {
	p, err := strconv.ParseInt(key, 10, 32)
	if err != nil || p < 0 || strconv.FormatInt(p, 10) != key {
		return 0, fmt.Errorf("partition %q is not a partition number (0, 1, 2, ...)", key)
	}
	return int32(p), nil
}

func tokenText(tok json.Token) string {
	switch t := tok.(type) {
	case nil:
		return "null"
	case string:
		return strconv.Quote(t)
	case json.Delim:
		return strconv.Quote(t.String())
	default:
		return fmt.Sprint(t)
	}
}

// quoteShort quotes s for an error message, eliding the middle of long input.
func quoteShort(s string) string {
	const limit = 120
	if len(s) > limit {
		s = s[:limit/2] + "..." + s[len(s)-limit/2:]
	}
	return strconv.Quote(s)
}

// StartingOffsets is Spark's startingOffsets source option: exactly one of
// Earliest, Latest or Specific is set. Specific must name every partition of
// the subscribed topics; its -2/-1 values stand for earliest/latest.
// Spark's default for streaming queries is Latest.
type StartingOffsets struct {
	Earliest, Latest bool
	Specific         Offsets
}

// String returns the option value: "earliest", "latest" or the JSON.
func (s StartingOffsets) String() string {
	switch {
	case s.Earliest:
		return "earliest"
	case s.Latest:
		return "latest"
	default:
		return s.Specific.String()
	}
}

// validate checks that exactly one choice is set.
func (s StartingOffsets) validate() error {
	n := 0
	for _, set := range []bool{s.Earliest, s.Latest, s.Specific != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		return errorf(ErrInvalidOffsets, "kafka: startingOffsets must be exactly one of earliest, latest or specific offsets (got %d)", n)
	}
	if s.Specific != nil && countPartitions(s.Specific) == 0 {
		return errorf(ErrInvalidOffsets, "kafka: startingOffsets %s names no partition (want e.g. %s)", s.Specific, startingExample)
	}
	return nil
}

const startingExample = `{"logs":{"0":23,"1":-2}} (-2 = earliest, -1 = latest)`

// ParseStartingOffsets parses Spark's startingOffsets option: "earliest",
// "latest" (case-insensitive, surrounding spaces ignored) or offsets JSON
// naming every partition, where -2 means earliest and -1 latest. Errors wrap
// ErrInvalidOffsets and say which values are allowed.
func ParseStartingOffsets(s string) (StartingOffsets, error) {
	t := strings.TrimSpace(s)
	switch strings.ToLower(t) {
	case "earliest":
		return StartingOffsets{Earliest: true}, nil
	case "latest":
		return StartingOffsets{Latest: true}, nil
	}
	if !strings.HasPrefix(t, "{") {
		return StartingOffsets{}, errorf(ErrInvalidOffsets,
			`kafka: invalid startingOffsets %s: want "earliest", "latest" or JSON like %s`, quoteShort(s), startingExample)
	}
	o, err := parseOffsets(t, true)
	if err != nil {
		return StartingOffsets{}, err
	}
	so := StartingOffsets{Specific: o}
	if err := so.validate(); err != nil {
		return StartingOffsets{}, err
	}
	return so, nil
}

func countPartitions(o Offsets) int {
	n := 0
	for _, parts := range o {
		n += len(parts)
	}
	return n
}

// sortedKeys returns the keys of m in ascending order.
func sortedKeys[K string | int32, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
