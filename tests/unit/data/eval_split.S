/*
 * A function split as GCC's hot/cold partitioning splits a PGO build's
 * _PyEval_EvalFrameDefault: ev_fn (the symbol) jumps into ev_fn_cold, a
 * range of its own with its own FDE, which jumps back into ev_fn. ev_tail
 * is another function ev_fn tail-jumps to (it never jumps back: not a
 * part), ev_big a larger one it reaches by a conditional jump. The unit
 * test (test_eval_parts.c) must find ev_fn_cold and nothing else.
 */
	.text
	.globl	ev_fn
	.type	ev_fn, @function
ev_fn:
	.cfi_startproc
	pushq	%rbp
	.cfi_def_cfa_offset 16
	.cfi_offset 6, -16
	movq	%rsp, %rbp
	.cfi_def_cfa_register 6
	testl	%edi, %edi
	je	ev_fn_cold_entry
	js	ev_big
	cmpl	$7, %edi
	je	ev_tail
	popq	%rbp
	.cfi_def_cfa 7, 8
	ret
	.cfi_def_cfa 6, 16
ev_fn_back:
	popq	%rbp
	.cfi_def_cfa 7, 8
	ret
	.cfi_endproc
	.size	ev_fn, .-ev_fn

	.globl	ev_tail
	.type	ev_tail, @function
ev_tail:
	.cfi_startproc
	xorl	%eax, %eax
	ret
	.cfi_endproc
	.size	ev_tail, .-ev_tail

	.type	ev_big, @function
ev_big:
	.cfi_startproc
	xorl	%eax, %eax
	.rept	64
	nop
	.endr
	jmp	ev_tail
	.cfi_endproc
	.size	ev_big, .-ev_big

	.section .text.unlikely,"ax",@progbits
	.type	ev_fn_cold, @function
ev_fn_cold:
	.cfi_startproc
	.cfi_def_cfa 6, 16
	.cfi_offset 6, -16
	nop
ev_fn_cold_entry:
	call	ev_tail
	testl	%eax, %eax
	jne	ev_fn_back
	jmp	ev_fn_cold
	.cfi_endproc
	.size	ev_fn_cold, .-ev_fn_cold
	.section .note.GNU-stack,"",@progbits
