package engine

// CurrentTimestamp is Spark's current_timestamp(): the batch's timestamp,
// the same for every row of a batch (and again when the batch is re-run).
func CurrentTimestamp() Column { return call("current_timestamp", "current_timestamp()") }

// ToTimestamp is Spark's to_timestamp(str, format): str parsed with a Spark
// datetime pattern such as "dd/MMM/yyyy:HH:mm:ss Z", in UTC unless the text
// has a zone; null if it does not parse. An empty format parses as
// CAST(str AS TIMESTAMP) does ("2026-12-05 14:00:00", "2026-12-05T14:00Z").
func ToTimestamp(c Column, format string) Column {
	if format == "" {
		return call("to_timestamp", "to_timestamp("+c.name+")", c)
	}
	return call("to_timestamp", "to_timestamp("+c.name+", "+format+")", c, Lit(format))
}

// DateFormat is Spark's date_format(ts, format): the timestamp formatted in
// UTC with a Spark datetime pattern such as "yyyy-MM-dd HH:mm".
func DateFormat(c Column, format string) Column {
	return call("date_format", "date_format("+c.name+", "+format+")", c, Lit(format))
}
