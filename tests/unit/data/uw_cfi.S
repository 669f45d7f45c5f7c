/*
 * Hand-written CFI with known rules at known addresses, for the unwind table
 * compiler's unit test: each global label marks an instruction boundary
 * whose row test_unwind_cfi.c checks.
 */
	.text
	.globl uw_push, uw_push_1, uw_push_2, uw_push_3, uw_push_4
	.type uw_push, @function
	.p2align 4
uw_push:
	.cfi_startproc
	push %rbx
uw_push_1:
	.cfi_adjust_cfa_offset 8
	.cfi_offset %rbx, -16
	sub $0x1000, %rsp
uw_push_2:
	.cfi_adjust_cfa_offset 0x1000
	add $0x1000, %rsp
uw_push_3:
	.cfi_adjust_cfa_offset -0x1000
	pop %rbx
uw_push_4:
	.cfi_adjust_cfa_offset -8
	ret
	.cfi_endproc
	.size uw_push, .-uw_push

	.globl uw_fp, uw_fp_1, uw_fp_2, uw_fp_3, uw_fp_4
	.type uw_fp, @function
	.p2align 4
uw_fp:
	.cfi_startproc
	push %rbp
uw_fp_1:
	.cfi_def_cfa_offset 16
	.cfi_offset %rbp, -16
	mov %rsp, %rbp
uw_fp_2:
	.cfi_def_cfa_register %rbp
	sub $16, %rsp
uw_fp_3:
	leave
uw_fp_4:
	.cfi_def_cfa %rsp, 8
	ret
	.cfi_endproc
	.size uw_fp, .-uw_fp

	/* Code without CFI: no rule, the stack ends. */
	.globl uw_nocfi
	.p2align 6
uw_nocfi:
	nop
	nop
	ret

	.globl uw_outer
	.type uw_outer, @function
	.p2align 4
uw_outer:
	.cfi_startproc
	.cfi_undefined %rip
	xor %ebp, %ebp
	hlt
	.cfi_endproc
	.size uw_outer, .-uw_outer

	/* A CFA offset that is not a multiple of 8. */
	.globl uw_odd, uw_odd_1
	.type uw_odd, @function
	.p2align 4
uw_odd:
	.cfi_startproc
	sub $4, %rsp
uw_odd_1:
	.cfi_adjust_cfa_offset 4
	add $4, %rsp
	.cfi_adjust_cfa_offset -4
	ret
	.cfi_endproc
	.size uw_odd, .-uw_odd

	/* CFA = *(rsp + 8), a DW_CFA_def_cfa_expression. */
	.globl uw_expr, uw_expr_1
	.type uw_expr, @function
	.p2align 4
uw_expr:
	.cfi_startproc
	nop
uw_expr_1:
	.cfi_escape 0x0f, 3, 0x77, 8, 0x06
	ret
	.cfi_endproc
	.size uw_expr, .-uw_expr

	/* rbp kept in rax: the caller's rbp cannot be found from the CFA. */
	.globl uw_reg, uw_reg_1
	.type uw_reg, @function
	.p2align 4
uw_reg:
	.cfi_startproc
	mov %rbp, %rax
uw_reg_1:
	.cfi_register %rbp, %rax
	xor %ebp, %ebp
	mov %rax, %rbp
	.cfi_restore %rbp
	ret
	.cfi_endproc
	.size uw_reg, .-uw_reg

	/* The return address not at CFA - 8. */
	.globl uw_ra, uw_ra_1
	.type uw_ra, @function
	.p2align 4
uw_ra:
	.cfi_startproc
	nop
uw_ra_1:
	.cfi_offset %rip, -16
	ret
	.cfi_endproc
	.size uw_ra, .-uw_ra

	/* A signal trampoline as glibc's __restore_rt describes its own:
	 * a signal-frame FDE, CFA = *(rsp + 160) (the sigcontext's rsp),
	 * rip at rsp + 168, rbp at rsp + 120. */
	.globl uw_sig
	.type uw_sig, @function
	.p2align 4
	nop
uw_sig:
	.cfi_startproc simple
	.cfi_signal_frame
	.cfi_escape 0x0f, 4, 0x77, 0xa0, 0x01, 0x06
	.cfi_escape 0x10, 0x10, 3, 0x77, 0xa8, 0x01
	.cfi_escape 0x10, 0x07, 3, 0x77, 0xa0, 0x01
	.cfi_escape 0x10, 0x06, 3, 0x77, 0xf8, 0x00
	mov $15, %rax
	syscall
	.cfi_endproc
	.size uw_sig, .-uw_sig

	/* A signal frame whose rip is not next to its rsp: not the kernel's
	 * layout the walk reads. */
	.globl uw_sig_bad
	.type uw_sig_bad, @function
	.p2align 4
uw_sig_bad:
	.cfi_startproc simple
	.cfi_signal_frame
	.cfi_escape 0x0f, 4, 0x77, 0xa0, 0x01, 0x06
	.cfi_escape 0x10, 0x10, 3, 0x77, 0xb0, 0x01
	.cfi_escape 0x10, 0x06, 3, 0x77, 0xf8, 0x00
	mov $15, %rax
	syscall
	.cfi_endproc
	.size uw_sig_bad, .-uw_sig_bad

	.section .note.GNU-stack, "", @progbits
