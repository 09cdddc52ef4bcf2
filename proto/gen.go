// Package proto holds the protobuf definitions of gostream's plans, tasks,
// shuffle and control RPCs. The Go code in its subpackages is generated: run
// `go generate ./proto` after editing a .proto file, never edit it by hand.
package proto

//go:generate bash gen.sh
