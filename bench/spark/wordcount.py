"""The reference Spark Structured Streaming word count, as the gostream benchmark suite runs it.

The query is the one in shared/DESIGN.md: read Kafka, CAST(value AS STRING),
explode(split(value, ' ')), groupBy('word').count(). Only the sink differs, so that the
suite can read the results back:

  complete mode: every batch overwrites OUTPUT_DIR with the whole result table as JSON
                 lines ({"word": ..., "count": ...}); after the last batch it holds the
                 final counts.
  update mode:   every batch prints its changed rows to stdout as JSON lines
                 ({"batch": N, "word": ..., "count": ...}), flushed per batch, so the
                 suite can time when a word first appears.

Each finished batch's StreamingQueryProgress is appended as one JSON line to
--progress, with "committedAtMs" (wall clock, ms) added by this script.

Run by bench/cmd/suite through spark-submit; see bench/README.md. `--warm` starts no
query: spark-submit resolves --packages into the Ivy cache and exits.
"""

import argparse
import json
import sys
import time

from pyspark.sql import SparkSession
from pyspark.sql.functions import explode, split
from pyspark.sql.streaming import StreamingQueryListener


class ProgressWriter(StreamingQueryListener):
    """Appends each batch's progress report to a JSON-lines file."""

    def __init__(self, path):
        self._file = open(path, "a", encoding="utf-8")

    def onQueryStarted(self, event):
        pass

    def onQueryProgress(self, event):
        report = json.loads(event.progress.json)
        report["committedAtMs"] = int(time.time() * 1000)
        self._file.write(json.dumps(report) + "\n")
        self._file.flush()

    def onQueryIdle(self, event):
        pass

    def onQueryTerminated(self, event):
        pass


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--warm", action="store_true", help="resolve packages and exit")
    p.add_argument("--brokers", help="Kafka bootstrap servers, host:port,...")
    p.add_argument("--topic", default="logs")
    p.add_argument("--checkpoint", help="checkpoint directory (must not hold another query's state)")
    p.add_argument("--output-mode", choices=["complete", "update"], default="complete")
    p.add_argument("--output-dir", help="complete mode: directory for the final counts")
    p.add_argument("--progress", help="JSON-lines file for per-batch progress reports")
    p.add_argument("--trigger", default="available-now",
                   help="available-now, or processing-time=INTERVAL (e.g. '0 seconds' for back-to-back batches)")
    p.add_argument("--starting-offsets", default="earliest")
    p.add_argument("--max-offsets-per-trigger", type=int, default=0, help="0 means no limit")
    return p.parse_args()


def write_batch(mode, output_dir):
    """Returns the foreachBatch function for the output mode."""
    if mode == "complete":
        def complete(df, batch_id):
            df.write.mode("overwrite").json(output_dir)
        return complete

    def update(df, batch_id):
        for row in df.collect():
            sys.stdout.write(json.dumps({"batch": batch_id, "word": row["word"], "count": row["count"]}) + "\n")
        sys.stdout.flush()
    return update


def main():
    args = parse_args()
    spark = SparkSession.builder.appName("gostream-bench-wordcount").getOrCreate()
    if args.warm:
        spark.stop()
        return
    if not (args.brokers and args.checkpoint and args.progress):
        sys.exit("wordcount.py: --brokers, --checkpoint and --progress are required")
    if args.output_mode == "complete" and not args.output_dir:
        sys.exit("wordcount.py: complete mode needs --output-dir")

    spark.streams.addListener(ProgressWriter(args.progress))

    reader = (spark.readStream.format("kafka")
              .option("kafka.bootstrap.servers", args.brokers)
              .option("subscribe", args.topic)
              .option("startingOffsets", args.starting_offsets))
    if args.max_offsets_per_trigger > 0:
        reader = reader.option("maxOffsetsPerTrigger", args.max_offsets_per_trigger)
    lines = reader.load().selectExpr("CAST(value AS STRING)")
    words = lines.select(explode(split(lines.value, " ")).alias("word"))
    counts = words.groupBy("word").count()

    writer = (counts.writeStream.outputMode(args.output_mode)
              .option("checkpointLocation", args.checkpoint)
              .foreachBatch(write_batch(args.output_mode, args.output_dir)))
    if args.trigger == "available-now":
        writer = writer.trigger(availableNow=True)
    elif args.trigger.startswith("processing-time="):
        writer = writer.trigger(processingTime=args.trigger.split("=", 1)[1])
    else:
        sys.exit(f"wordcount.py: unknown --trigger {args.trigger!r} (want available-now or processing-time=INTERVAL)")

    writer.start().awaitTermination()
    spark.stop()


if __name__ == "__main__":
    main()
