package kafkasrc

import (
	"errors"
	"maps"
	"strings"
	"testing"
)

func TestParseOffsets(t *testing.T) {
	tests := []struct {
		in      string
		want    Offsets
		wantErr string // substring; "" means success
	}{
		{in: `{}`, want: Offsets{}},
		{in: `{"logs":{}}`, want: Offsets{"logs": {}}},
		{in: `{"logs":{"0":23,"1":0}}`, want: Offsets{"logs": {0: 23, 1: 0}}},
		{in: ` { "a" : { "2" : 9223372036854775807 } , "b":{"0":1} } `, want: Offsets{"a": {2: 9223372036854775807}, "b": {0: 1}}},
		{in: `{"logs":{"0":-1}}`, wantErr: "only allowed in startingOffsets"},
		{in: `{"logs":{"0":-2}}`, wantErr: "only allowed in startingOffsets"},
		{in: `{"logs":{"0":1.5}}`, wantErr: "not a 64-bit integer"},
		{in: `{"logs":{"0":1e3}}`, wantErr: "not a 64-bit integer"},
		{in: `{"logs":{"0":9223372036854775808}}`, wantErr: "not a 64-bit integer"},
		{in: `{"logs":{"0":"5"}}`, wantErr: "not an integer"},
		{in: `{"logs":{"0":null}}`, wantErr: "not an integer"},
		{in: `{"logs":{"x":5}}`, wantErr: "not a partition number"},
		{in: `{"logs":{"-1":5}}`, wantErr: "not a partition number"},
		{in: `{"logs":{"01":5}}`, wantErr: "not a partition number"},
		{in: `{"logs":{"2147483648":5}}`, wantErr: "not a partition number"},
		{in: `{"logs":{"0":1,"0":2}}`, wantErr: "appears twice"},
		{in: `{"logs":{"0":1},"logs":{"1":2}}`, wantErr: "appears twice"},
		{in: `{"":{"0":1}}`, wantErr: "empty topic name"},
		{in: `{"logs":[1]}`, wantErr: `"{" was expected`},
		{in: `{"logs":{"0":1}} x`, wantErr: "after the closing brace"},
		{in: `{"logs":{"0":1}}{}`, wantErr: "after the closing brace"},
		{in: `[]`, wantErr: `"{" was expected`},
		{in: `null`, wantErr: `"{" was expected`},
		{in: ``, wantErr: "EOF"},
		{in: `{"logs":{"0":1}`, wantErr: "EOF"},
	}
	for _, tt := range tests {
		got, err := ParseOffsets(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrInvalidOffsets) {
				t.Errorf("ParseOffsets(%s) error = %v, want ErrInvalidOffsets containing %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseOffsets(%s) error = %v", tt.in, err)
			continue
		}
		if !equalOffsets(got, tt.want) {
			t.Errorf("ParseOffsets(%s) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestOffsetsString(t *testing.T) {
	o := Offsets{"logs": {10: 5, 2: 7, 0: 23}, "a": {0: -2}, "z": {}}
	if got, want := o.String(), `{"a":{"0":-2},"logs":{"0":23,"2":7,"10":5},"z":{}}`; got != want {
		t.Errorf("String() = %s, want %s", got, want)
	}
	if got := Offsets(nil).String(); got != "{}" {
		t.Errorf("nil String() = %s, want {}", got)
	}
}

func TestParseStartingOffsets(t *testing.T) {
	tests := []struct {
		in      string
		want    StartingOffsets
		wantErr string
	}{
		{in: "earliest", want: StartingOffsets{Earliest: true}},
		{in: " LATEST ", want: StartingOffsets{Latest: true}},
		{in: `{"logs":{"0":23,"1":-2,"2":-1}}`, want: StartingOffsets{Specific: Offsets{"logs": {0: 23, 1: -2, 2: -1}}}},
		{in: `{"logs":{"0":-3}}`, wantErr: "use -2 for earliest, -1 for latest"},
		{in: `{"logs":{}}`, wantErr: "names no partition"},
		{in: `{}`, wantErr: "names no partition"},
		{in: "", wantErr: `want "earliest", "latest" or JSON`},
		{in: "beginning", wantErr: `want "earliest", "latest" or JSON`},
		{in: `{"logs":`, wantErr: "invalid offsets JSON"},
	}
	for _, tt := range tests {
		got, err := ParseStartingOffsets(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrInvalidOffsets) {
				t.Errorf("ParseStartingOffsets(%q) error = %v, want ErrInvalidOffsets containing %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseStartingOffsets(%q) error = %v", tt.in, err)
			continue
		}
		if got.Earliest != tt.want.Earliest || got.Latest != tt.want.Latest || !equalOffsets(got.Specific, tt.want.Specific) {
			t.Errorf("ParseStartingOffsets(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
		if again, err := ParseStartingOffsets(got.String()); err != nil || again.String() != got.String() {
			t.Errorf("round trip of %q: %v, %v", got.String(), again, err)
		}
	}
}

func FuzzParseOffsets(f *testing.F) {
	for _, s := range []string{`{}`, `{"logs":{"0":23,"1":42}}`, `{"a":{"0":1},"b":{"7":0}}`, `{"logs":{"0":-2}}`, `{"x":{"01":1}}`, `{"\u00e9":{"0":1}}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		o, err := ParseOffsets(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidOffsets) {
				t.Fatalf("error %v does not wrap ErrInvalidOffsets", err)
			}
			return
		}
		again, err := ParseOffsets(o.String())
		if err != nil {
			t.Fatalf("String() %s of parsed %q does not parse: %v", o, s, err)
		}
		if !equalOffsets(o, again) {
			t.Fatalf("round trip changed %v to %v", o, again)
		}
		for _, parts := range o {
			for p, off := range parts {
				if p < 0 || off < 0 {
					t.Fatalf("accepted negative partition or offset in %q", s)
				}
			}
		}
	})
}

func FuzzParseStartingOffsets(f *testing.F) {
	for _, s := range []string{"earliest", "latest", `{"logs":{"0":23,"1":-2}}`, `{"logs":{"0":-1}}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		so, err := ParseStartingOffsets(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidOffsets) {
				t.Fatalf("error %v does not wrap ErrInvalidOffsets", err)
			}
			return
		}
		if err := so.validate(); err != nil {
			t.Fatalf("parsed %q into invalid %+v: %v", s, so, err)
		}
		again, err := ParseStartingOffsets(so.String())
		if err != nil || again.String() != so.String() {
			t.Fatalf("round trip of %q: %v, %v", so, again, err)
		}
	})
}

func equalOffsets(a, b Offsets) bool {
	return maps.EqualFunc(a, b, func(x, y map[int32]int64) bool { return maps.Equal(x, y) })
}

// TestDropUnpaired: partitions in one listing only (added to a topic
// between the start and the end offsets' listings) are left to the next
// listing, so the two name the same partitions and a batch can be planned
// from them (before: planning failed with ErrInvalidOffsets, "earliest
// offsets ... and latest offsets ... name different partitions").
func TestDropUnpaired(t *testing.T) {
	earliest := Offsets{"logs": {0: 0, 1: 5}, "gone": {0: 1}}
	latest := Offsets{"logs": {0: 10, 1: 20, 2: 0, 3: 0}, "new": {0: 0}}
	dropUnpaired(earliest, latest)
	if got, want := earliest.String(), `{"logs":{"0":0,"1":5}}`; got != want {
		t.Errorf("earliest %s; want %s", got, want)
	}
	if got, want := latest.String(), `{"logs":{"0":10,"1":20}}`; got != want {
		t.Errorf("latest %s; want %s", got, want)
	}
	if _, err := PlanBatch(PlanInput{Earliest: earliest, Latest: latest, Starting: StartingOffsets{Earliest: true}}); err != nil {
		t.Errorf("planning from the listings: %v", err)
	}
}
