#include "textflag.h"

// func prefetchSlots(slots unsafe.Pointer, hs *[probeBatch]uint64, n int, mask uint64)
TEXT ·prefetchSlots(SB), NOSPLIT|NOFRAME, $0-32
	MOVQ	slots+0(FP), AX
	MOVQ	hs+8(FP), BX
	MOVQ	n+16(FP), CX
	MOVQ	mask+24(FP), DX
	TESTQ	CX, CX
	JEQ	done
loop:
	MOVQ	(BX), SI
	ANDQ	DX, SI
	SHLQ	$5, SI
	PREFETCHT0	(AX)(SI*1)
	ADDQ	$8, BX
	DECQ	CX
	JNE	loop
done:
	RET
