package operators

import (
	"fmt"
	"strings"

	"github.com/gostream/gostream/proto/planpb"
)

// Field is one column of a schema.
type Field struct {
	Name     string
	Type     planpb.DataType
	Nullable bool
	Fields   Schema // the fields of a STRUCT
}

// Schema is an ordered list of columns.
type Schema []Field

// KafkaSchema is the schema of rows read from Kafka, as in Spark's Kafka
// source; headers is present only when includeHeaders is set.
func KafkaSchema(includeHeaders bool) Schema {
	s := Schema{
		{Name: "key", Type: planpb.DataType_BINARY, Nullable: true},
		{Name: "value", Type: planpb.DataType_BINARY, Nullable: true},
		{Name: "topic", Type: planpb.DataType_STRING},
		{Name: "partition", Type: planpb.DataType_INT},
		{Name: "offset", Type: planpb.DataType_LONG},
		{Name: "timestamp", Type: planpb.DataType_TIMESTAMP},
		{Name: "timestampType", Type: planpb.DataType_INT},
	}
	if includeHeaders {
		s = append(s, Field{Name: "headers", Type: planpb.DataType_HEADERS, Nullable: true})
	}
	return s
}

// Index returns the position of the named column, matched case-insensitively
// as Spark does by default.
func (s Schema) Index(name string) (int, error) {
	for i, f := range s {
		if strings.EqualFold(f.Name, name) {
			return i, nil
		}
	}
	return -1, fmt.Errorf("%w %q: the input has columns %s", ErrUnknownColumn, name, s.names())
}

// Names returns the column names.
func (s Schema) Names() []string {
	out := make([]string, len(s))
	for i, f := range s {
		out[i] = f.Name
	}
	return out
}

func (s Schema) names() string { return "[" + strings.Join(s.Names(), ", ") + "]" }

// TypeName is the Spark SQL name of t.
func TypeName(t planpb.DataType) string {
	switch t {
	case planpb.DataType_STRING:
		return "string"
	case planpb.DataType_BINARY:
		return "binary"
	case planpb.DataType_LONG:
		return "bigint"
	case planpb.DataType_INT:
		return "int"
	case planpb.DataType_DOUBLE:
		return "double"
	case planpb.DataType_BOOLEAN:
		return "boolean"
	case planpb.DataType_TIMESTAMP:
		return "timestamp"
	case planpb.DataType_ARRAY_STRING:
		return "array<string>"
	case planpb.DataType_HEADERS:
		return "array<struct<key:string,value:binary>>"
	case planpb.DataType_STRUCT:
		return "struct"
	}
	return "unknown"
}
