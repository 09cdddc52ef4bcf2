#include "textflag.h"

// MASKS64 sets seps (AX) and high (R8) for the 64 bytes at reg; Y0 holds
// the separator in every byte.
#define MASKS64(reg) \
	VMOVDQU	(reg), Y1 \
	VMOVDQU	32(reg), Y2 \
	VPCMPEQB	Y0, Y1, Y3 \
	VPCMPEQB	Y0, Y2, Y4 \
	VPMOVMSKB	Y3, AX \
	VPMOVMSKB	Y4, BX \
	SHLQ	$32, BX \
	ORQ	BX, AX \
	VPMOVMSKB	Y1, R8 \
	VPMOVMSKB	Y2, BX \
	SHLQ	$32, BX \
	ORQ	BX, R8

// func sepMasksAVX2(p *byte, n int, sep byte) (seps, high uint64)
TEXT ·sepMasksAVX2(SB), NOSPLIT|NOFRAME, $0-40
	MOVQ	p+0(FP), SI
	MOVQ	n+8(FP), CX
	MOVBQZX	sep+16(FP), AX
	MOVQ	AX, X0
	VPBROADCASTB	X0, Y0
	CMPQ	CX, $64
	JAE	full
	MOVQ	SI, DX
	ANDQ	$4095, DX
	CMPQ	DX, $4032
	JA	backward
	// The 64 bytes from p stay in its page: keep the low n bits.
	MASKS64(SI)
	MOVQ	$1, R10
	SHLQ	CX, R10
	DECQ	R10
	ANDQ	R10, AX
	ANDQ	R10, R8
	JMP	done
backward:
	// Load the 64 bytes ending at p+n, all in p's page, and shift p's
	// byte down to bit 0.
	LEAQ	-64(SI)(CX*1), DI
	MASKS64(DI)
	NEGQ	CX
	ADDQ	$64, CX
	SHRQ	CX, AX
	SHRQ	CX, R8
	JMP	done
full:
	MASKS64(SI)
done:
	VZEROUPPER
	MOVQ	AX, seps+24(FP)
	MOVQ	R8, high+32(FP)
	RET
