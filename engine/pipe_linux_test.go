package engine

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gostream/gostream/operators"
)

// pipeFcntl runs fcntl cmd with arg on the pipe f is an end of.
func pipeFcntl(t *testing.T, f *os.File, cmd, arg int) int {
	t.Helper()
	rc, err := f.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if cerr := rc.Control(func(fd uintptr) { n, err = unix.FcntlInt(fd, cmd, arg) }); cerr != nil {
		t.Fatal(cerr)
	}
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestJSONLSinkGrowsPipe checks that a jsonl sink writing to a pipe gives
// it a buffer of pipeBytes, so that a batch of several times Linux's
// default 64 KiB goes in before its reader reads anything.
func TestJSONLSinkGrowsPipe(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	pipeFcntl(t, w, unix.F_SETPIPE_SZ, 64<<10) // Linux's default, whatever this machine's is
	rows := make([]operators.Row, 5000)        // about 200 KB of lines
	for i := range rows {
		rows[i] = wc(fmt.Sprintf("word-%05d", i), int64(i))
	}
	s := &JSONLSink{W: w}
	added := make(chan error, 1)
	go func() { added <- s.AddBatch(context.Background(), batchOf(7, rows...)) }()
	select {
	case err := <-added:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		w.Close() // unblocks the sink
		<-added
		t.Fatal("the sink blocked on a pipe nobody read: the pipe was not enlarged")
	}
	if n := pipeFcntl(t, w, unix.F_GETPIPE_SZ, 0); n != pipeBytes {
		t.Errorf("pipe buffer: %d bytes, want %d", n, pipeBytes)
	}
	w.Close()
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if lines := bytes.Count(out, []byte("\n")); lines != len(rows) {
		t.Errorf("read %d lines, want %d", lines, len(rows))
	}
	if want := `{"batch":7,"word":"word-04999","count":4999}` + "\n"; !bytes.HasSuffix(out, []byte(want)) {
		t.Errorf("last line: got %q, want %q", out[max(0, len(out)-len(want)):], want)
	}

	// A FIFO given by path is enlarged too.
	fifo := filepath.Join(t.TempDir(), "out.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	fr, err := os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fr.Close()
	fs := &JSONLSink{Path: fifo}
	defer fs.Close()
	if err := fs.AddBatch(context.Background(), batchOf(0, wc("a", 1))); err != nil {
		t.Fatal(err)
	}
	if n := pipeFcntl(t, fs.f, unix.F_GETPIPE_SZ, 0); n != pipeBytes {
		t.Errorf("FIFO buffer: %d bytes, want %d", n, pipeBytes)
	}
}
