// Package kafkasrc owns gostream's side of Apache Kafka: planning the exact
// offset ranges of each micro-batch (PlanBatch, pure and I/O free), reading
// those ranges with franz-go direct partition reads, fetching ahead for
// continuous queries (Source), reading record values alone with Fetch
// requests and a record-batch decoder of its own (Source.ReadValues), topic
// administration (Admin), the line collector behind "gostream produce"
// (ProduceLines) and the embedded single-process broker of the zero-setup
// quickstart (StartEmbedded).
//
// It speaks Spark's vocabulary: offsets JSON, startingOffsets,
// maxOffsetsPerTrigger, minPartitions, failOnDataLoss and the "kafka.*"
// option passthrough behave as in Spark's Kafka source. The package never
// prints; it logs through log/slog and returns errors that name the cause
// and the next step. It must not know about query plans, state or the
// cluster: the engine passes plain offsets in and gets records out.
//
// Locking: Source has one mutex guarding its reader pool, and one its cache
// of partition leaders for ReadValues; a partition reader
// is owned by one ReadRange call at a time and needs no lock of its own.
// While idle, a reader told to Follow is owned by its fetch-ahead goroutine,
// which takes no lock; taking the reader out of the pool stops that
// goroutine and waits for it first, and only the offset it publishes for
// Buffered is shared (atomically).
package kafkasrc
