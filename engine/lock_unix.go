//go:build unix

package engine

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// dirLock is an exclusive flock(2) on a checkpoint directory itself, held
// while a query runs. Locking the directory, not a file in it, writes
// nothing: a checkpoint refused for any reason stays byte for byte as it
// was. The kernel releases the lock when the process dies, so a crash never
// leaves a stale lock behind.
type dirLock struct{ f *os.File }

// lockDir locks dir, which must exist. If another process (or another
// query of this one) holds it, the error names that process's pid, read
// from the kernel's lock table (/proc/locks) where there is one.
func lockDir(dir string) (*dirLock, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w", ErrCheckpoint, dir, err)
	}
	// The holder may release the lock between a failed attempt and the
	// look-up of its pid: then try again, a few times.
	for range 3 {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if !errors.Is(err, unix.EWOULDBLOCK) {
			break
		}
		if pid, ok := lockHolder(f); ok {
			f.Close()
			return nil, inUse(dir, pid)
		}
	}
	switch {
	case errors.Is(err, unix.EWOULDBLOCK):
		f.Close()
		return nil, inUse(dir, 0)
	case err != nil:
		f.Close()
		return nil, fmt.Errorf("%w %s: locking it: %w", ErrCheckpoint, dir, err)
	}
	return &dirLock{f: f}, nil
}

// unlock releases the lock.
func (l *dirLock) unlock() error { return l.f.Close() }

// lockHolder finds the pid holding a flock on f's file in /proc/locks,
// whose lines read "1: FLOCK  ADVISORY  WRITE 4242 fe:00:9989264 0 EOF"
// (device major:minor in hex, then the inode). The device is not compared:
// on overlay and btrfs file systems it differs from stat's.
func lockHolder(f *os.File) (pid int, ok bool) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return 0, false
	}
	locks, err := os.Open("/proc/locks")
	if err != nil {
		return 0, false
	}
	defer locks.Close()
	ino := ":" + strconv.FormatUint(st.Ino, 10)
	sc := bufio.NewScanner(locks)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[1] != "FLOCK" || fields[3] != "WRITE" || !strings.HasSuffix(fields[5], ino) {
			continue // a waiter ("->") has one field more and is skipped too
		}
		if pid, err := strconv.Atoi(fields[4]); err == nil && pid > 0 {
			return pid, true
		}
	}
	return 0, false
}
