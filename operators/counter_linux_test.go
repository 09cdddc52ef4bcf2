package operators

import (
	"syscall"
	"testing"
)

// TestSepMasksPageEnd checks that sepMasks reads nothing past a slice that
// ends where an unreadable page begins: every length up to 64 ending there.
func TestSepMasksPageEnd(t *testing.T) {
	page := syscall.Getpagesize()
	mem, err := syscall.Mmap(-1, 0, 2*page, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Munmap(mem)
	if err := syscall.Mprotect(mem[page:], syscall.PROT_NONE); err != nil {
		t.Fatal(err)
	}
	for i := range page {
		mem[i] = "ab \x80"[i%4]
	}
	for n := 1; n <= 64; n++ {
		b := mem[page-n : page]
		ws, wh := sepMasksNaive(b, ' ')
		if s, h := sepMasks(b, ' '); s != ws || h != wh {
			t.Fatalf("n %d: sepMasks %x %x, want %x %x", n, s, h, ws, wh)
		}
	}
}
