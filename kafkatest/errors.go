package kafkatest

import "errors"

// Sentinel errors. Errors returned by this package wrap one of these (test
// them with errors.Is) and add the cause and the next step.
var (
	// ErrClosed is returned by Cluster methods called after Close.
	ErrClosed = errors.New("kafkatest: cluster closed")

	// ErrJava is returned when no usable java executable is found.
	ErrJava = errors.New("kafkatest: java not found")

	// ErrResolve is returned when Maven cannot resolve the Kafka jars.
	ErrResolve = errors.New("kafkatest: resolving Kafka jars failed")

	// ErrBrokerExited is returned when a broker or Kafka tool process exits
	// unexpectedly; the error carries the tail of its log.
	ErrBrokerExited = errors.New("kafkatest: Kafka process exited")

	// ErrNotReady is returned when the cluster, or a topic, does not become
	// ready before the deadline.
	ErrNotReady = errors.New("kafkatest: not ready")

	// ErrBackend is returned for an unknown GOSTREAM_KAFKA_BACKEND or an
	// unusable external cluster configuration.
	ErrBackend = errors.New("kafkatest: bad backend configuration")

	// ErrDocker is returned when the docker backend finds no Docker engine,
	// or cannot create, start or remove a container.
	ErrDocker = errors.New("kafkatest: docker backend failed")

	// ErrTopic is returned when a topic cannot be created, found or changed.
	ErrTopic = errors.New("kafkatest: topic operation failed")

	// ErrConsoleProducer is returned when kafka.tools.ConsoleProducer fails.
	ErrConsoleProducer = errors.New("kafkatest: console producer failed")
)

// errPortTaken marks a broker that could not bind a port chosen for it; the
// process and docker backends then retry the start once with fresh ports.
var errPortTaken = errors.New("kafkatest: port already in use")
