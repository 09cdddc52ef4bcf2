package engine

import (
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// pipeBytes is the buffer a stream sink asks of a pipe it writes to: Linux's
// default of 64 KiB holds about 1,500 changed rows, a fifth of a busy
// update-mode batch (8,000 rows, 350 KB), so the sink would wait for its
// reader some five times a batch, and the next batch for the sink. 1 MiB is
// the most an unprivileged process may ask for by default
// (/proc/sys/fs/pipe-max-size).
const pipeBytes = 1 << 20

// growPipe enlarges the buffer of w if it is a pipe or a FIFO, so that a
// batch's output goes into it in one go while its reader catches up. It is
// best effort: a smaller buffer is only slower.
func growPipe(w io.Writer) {
	f, ok := w.(*os.File)
	if !ok {
		return
	}
	if st, err := f.Stat(); err != nil || st.Mode()&os.ModeNamedPipe == 0 {
		return
	}
	// Not f.Fd(): that would turn a FIFO opened by path blocking.
	if rc, err := f.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) { _, _ = unix.FcntlInt(fd, unix.F_SETPIPE_SZ, pipeBytes) })
	}
}
