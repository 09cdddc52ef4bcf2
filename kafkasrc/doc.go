// Package kafkasrc owns gostream's side of Apache Kafka: planning the exact
// offset ranges of each micro-batch (PlanBatch, pure and I/O free), reading
// those ranges with franz-go direct partition reads (Source), topic
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
// Locking: Source has one mutex guarding its reader pool; a partition reader
// is owned by one ReadRange call at a time and needs no lock of its own.
package kafkasrc
