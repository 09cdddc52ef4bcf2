package engine

import (
	"encoding/json"
	"time"

	"github.com/gostream/gostream/kafkasrc"
)

// Progress reports one micro-batch, shaped like Spark's
// StreamingQueryProgress (the same JSON field names).
type Progress struct {
	ID                     string           `json:"id"`
	RunID                  string           `json:"runId"`
	Name                   string           `json:"name"`
	Timestamp              time.Time        `json:"timestamp"`
	BatchID                int64            `json:"batchId"`
	NumInputRows           int64            `json:"numInputRows"`
	InputRowsPerSecond     float64          `json:"inputRowsPerSecond"`
	ProcessedRowsPerSecond float64          `json:"processedRowsPerSecond"`
	DurationMs             map[string]int64 `json:"durationMs"`
	StateOperators         []StateProgress  `json:"stateOperators"`
	Sources                []SourceProgress `json:"sources"`
	Sink                   SinkProgress     `json:"sink"`
}

// StateProgress reports the state of an aggregation.
type StateProgress struct {
	OperatorName         string `json:"operatorName"`
	NumRowsTotal         int64  `json:"numRowsTotal"`
	NumRowsUpdated       int64  `json:"numRowsUpdated"`
	NumShufflePartitions int    `json:"numShufflePartitions"`
}

// SourceProgress reports what a batch read from a source. Offsets are
// Spark's JSON ({"logs":{"0":123}}).
type SourceProgress struct {
	Description            string           `json:"description"`
	StartOffset            kafkasrc.Offsets `json:"startOffset"`
	EndOffset              kafkasrc.Offsets `json:"endOffset"`
	LatestOffset           kafkasrc.Offsets `json:"latestOffset"`
	NumInputRows           int64            `json:"numInputRows"`
	InputRowsPerSecond     float64          `json:"inputRowsPerSecond"`
	ProcessedRowsPerSecond float64          `json:"processedRowsPerSecond"`
}

// SinkProgress reports what a batch wrote.
type SinkProgress struct {
	Description   string `json:"description"`
	NumOutputRows int64  `json:"numOutputRows"`
}

// JSON is the progress as one line of JSON.
func (p Progress) JSON() string {
	b, _ := json.Marshal(p)
	return string(b)
}
