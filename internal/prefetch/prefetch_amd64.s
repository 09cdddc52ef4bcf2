#include "textflag.h"

// func Line(p unsafe.Pointer)
TEXT ·Line(SB), NOSPLIT|NOFRAME, $0-8
	MOVQ	p+0(FP), AX
	PREFETCHT0	(AX)
	RET

// func Slots(base unsafe.Pointer, hashes []uint64, mask uint64, shift uint)
TEXT ·Slots(SB), NOSPLIT|NOFRAME, $0-48
	MOVQ	base+0(FP), AX
	MOVQ	hashes_base+8(FP), BX
	MOVQ	hashes_len+16(FP), DI
	MOVQ	mask+32(FP), DX
	MOVQ	shift+40(FP), CX
	TESTQ	DI, DI
	JEQ	done
loop:
	MOVQ	(BX), SI
	ANDQ	DX, SI
	SHLQ	CX, SI
	PREFETCHT0	(AX)(SI*1)
	ADDQ	$8, BX
	DECQ	DI
	JNE	loop
done:
	RET
