package kafkasrc

import (
	"errors"
	"fmt"
)

// Sentinel errors. Errors returned by this package wrap one of these (test
// with errors.Is) and carry a message that names the cause and the next step.
var (
	// ErrDataLoss reports offsets that can no longer be read: deleted by
	// retention or DeleteRecords, a recreated topic, or a vanished partition.
	ErrDataLoss = errors.New("kafka: data loss")
	// ErrUnknownTopic reports a topic that does not exist on the brokers.
	ErrUnknownTopic = errors.New("kafka: unknown topic")
	// ErrTopicExists reports a topic that already exists.
	ErrTopicExists = errors.New("kafka: topic already exists")
	// ErrUnreachable reports that no broker answered: within
	// Config.Timeout when none ever answered, or when a call gives up
	// (ErrUnavailable) and none answers.
	ErrUnreachable = errors.New("kafka: no broker reachable")
	// ErrUnavailable reports errors that may pass (a partition without a
	// leader, a broker down or restarting) that lasted Config.RetryTimeout.
	// The message names the brokers that answer and the partitions without
	// a leader.
	ErrUnavailable = errors.New("kafka: cluster unavailable")
	// ErrInvalidOffsets reports malformed offsets JSON, a bad startingOffsets
	// value or inconsistent planner input.
	ErrInvalidOffsets = errors.New("kafka: invalid offsets")
	// ErrInvalidConfig reports an unsupported or malformed option.
	ErrInvalidConfig = errors.New("kafka: invalid configuration")
	// ErrLineTooLong reports an input line longer than
	// ProduceConfig.MaxRecordBytes.
	ErrLineTooLong = errors.New("kafka: line too long")
	// ErrNotAcked reports produced records the brokers did not acknowledge
	// in time after a stop.
	ErrNotAcked = errors.New("kafka: records not acknowledged")
	// ErrClosed reports use of a closed Source.
	ErrClosed = errors.New("kafka: source closed")
)

// userError is an error with a complete user-facing message that still
// matches its sentinel with errors.Is, and optionally a cause.
type userError struct {
	sentinel error
	msg      string
	cause    error
}

func (e *userError) Error() string { return e.msg }

func (e *userError) Unwrap() []error {
	if e.cause == nil {
		return []error{e.sentinel}
	}
	return []error{e.sentinel, e.cause}
}

// errorf returns an error whose message is exactly the formatted text (which
// should start with "kafka: ") and which wraps sentinel.
func errorf(sentinel error, format string, args ...any) error {
	return &userError{sentinel: sentinel, msg: fmt.Sprintf(format, args...)}
}

// wrapf is errorf that also wraps cause.
func wrapf(sentinel, cause error, format string, args ...any) error {
	return &userError{sentinel: sentinel, msg: fmt.Sprintf(format, args...), cause: cause}
}
