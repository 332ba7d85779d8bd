/*
 * counter-guest.S -- a tiny bare-metal x86 guest for the QEMU live-update tests (issue 16).
 *
 * Built by examples/qemu/build-guest.sh into a 64 KiB flat image that QEMU runs as its -bios
 * (no firmware, so it starts at once): the code sits at F000:0000 (file offset 0) and the reset
 * vector, file offset 0xFFF0, is the far jump EA 00 00 00 F0 (jmp F000:0000). Real mode
 * throughout, 32-bit data through operand-size prefixes; interrupts stay off.
 *
 * At reset (and only then):
 *   - zeroes the counter (QEMU keeps RAM across a system_reset), prints "BOOT\r\n" on COM1
 *     (port 0x3F8, 8N1, polling the line status for an empty transmitter);
 *   - writes the boot marker, the dword 0x214F554C ("LUO!" in memory), at physical 0x504;
 *   - fills the PATTERN region, physical 0x10000 up to 0x90000 (512 KiB): the little-endian dword
 *     at physical address A holds A ^ 0x5A5A5A5A; then prints "PATTERN\r\n".
 * Then forever: a busy wait of DELAY turns, then an increment of the 32-bit counter at physical
 * 0x500 (in RAM, so a guest resumed from its saved state continues from where it paused, and
 * its RAM shows how far it got); every 2^COUNT_SHIFT increments it prints "COUNT xxxxxxxx\r\n",
 * the counter in 8 lowercase hex digits.
 *
 * Built with --idle (build-guest.sh), it halts after PATTERN instead (no COUNT lines, the counter
 * stays 0): the idle tenant of the blackout benchmark.
 *
 * Only a real reset starts from 0 again, and it prints BOOT again: a log with one BOOT and
 * increasing COUNT lines is a guest that never rebooted. tests/vm/guest/guest-ram.ts reads the
 * counter, the marker and the pattern from the guest's RAM (the memfd QEMU maps).
 *
 * Memory used: the stack below 0000:7000, 0x500..0x507, 0x10000..0x8FFFF. RAM of 1 MiB or more.
 *
 * Run (QEMU 7.2; tests/integration/qemu-guest.test.ts does this):
 *   qemu-system-x86_64 -machine pc-i440fx-7.2,memory-backend=ram0 -m 16M \
 *     -object memory-backend-file,id=ram0,size=16M,mem-path=RAM,share=on -bios IMG \
 *     -display none -nodefaults -serial file:LOG -accel tcg
 * -nodefaults drops the VGA card, the NIC, the parallel port, the floppy and CD drives and the
 * monitor, and the default COM1 too: -serial brings COM1 back. -serial file: truncates LOG when
 * QEMU opens it; a restarted QEMU (-incoming) that should add to the same log takes
 * -chardev file,id=s0,path=LOG,append=on -serial chardev:s0 instead. Saved with QMP migrate and
 * x-ignore-shared and loaded by a new QEMU over the same RAM file, the guest continued counting
 * without a second BOOT (tried by hand, 2026-12-04: 21 298 bytes of RAM transferred).
 */

COUNTER     = 0x500
MARKER      = 0x504
MARKER_WORD = 0x214F554C              /* bytes 4C 55 4F 21: "LUO!" */
PAT_XOR     = 0x5A5A5A5A
PAT_FIRST   = 0x1000                  /* segment of physical 0x10000 */
PAT_END     = 0x9000                  /* segment of physical 0x90000 (not filled) */
COM1        = 0x3F8
/*
 * The pace. The counter goes up once every DELAY turns of a busy loop, and a COUNT line is
 * printed every 2^COUNT_SHIFT increments. Measured (QEMU 7.2.22, 2026-12-04, on the project's
 * build machine, AMD EPYC): under plain TCG about 570 000 increments and 17 COUNT lines a second
 * (one every ~58 ms; 11/s when its two CPUs are busy), PATTERN printed 0.15 s after QEMU starts;
 * nested, under TCG inside the TCG test VM (through hostrun), about 16 times slower: 36 000
 * increments and 1.1 lines a second, PATTERN 0.8 s after the start. The 32-bit counter takes
 * two hours to wrap under plain TCG.
 */
DELAY       = 1024                    /* at most 0x8000 */
COUNT_SHIFT = 15
COUNT_MASK  = (1 << COUNT_SHIFT) - 1

    .code16
    .text
    .globl start
start:
    cli
    cld
    xor     %ax, %ax
    mov     %ax, %ds
    mov     %ax, %es
    mov     %ax, %ss
    mov     $0x7000, %sp
    movl    $0, COUNTER                 /* a reset starts the count again */

    /* COM1: 115200 8N1 (divisor 1), FIFO on, no interrupts */
    mov     $COM1+3, %dx
    mov     $0x80, %al                  /* LCR: divisor latch */
    out     %al, %dx
    mov     $COM1, %dx
    mov     $1, %al
    out     %al, %dx
    inc     %dx
    xor     %al, %al
    out     %al, %dx                    /* divisor high byte; IER 0 once the latch is off */
    mov     $COM1+3, %dx
    mov     $0x03, %al                  /* LCR: 8N1 */
    out     %al, %dx
    dec     %dx
    mov     $0x07, %al                  /* FCR: FIFO enabled and cleared */
    out     %al, %dx

    mov     $msg_boot, %si
    call    puts

    movl    $MARKER_WORD, MARKER

    /* the pattern: %bx walks the 64 KiB segments, %edx is the physical address of %es:%di */
    mov     $PAT_FIRST, %bx
    movl    $PAT_FIRST << 4, %edx
fill_segment:
    mov     %bx, %es
    xor     %di, %di
    mov     $0x4000, %cx                /* 16384 dwords in 64 KiB */
fill_dword:
    movl    %edx, %eax
    xorl    $PAT_XOR, %eax
    stosl                               /* %es:(%di) = %eax, %di += 4 */
    addl    $4, %edx
    loop    fill_dword
    add     $0x1000, %bx
    cmp     $PAT_END, %bx
    jb      fill_segment

    mov     $msg_pattern, %si
    call    puts

.ifdef IDLE
    /* build-guest.sh --idle: halt here, interrupts off, never counting: an idle tenant whose QEMU
       costs no CPU, so that many of them fit a 2-vCPU TCG VM (bench/blackout.ts) */
idle:
    hlt
    jmp     idle
.endif

count:
    mov     $DELAY, %cx                 /* a busy wait between increments */
1:  dec     %cx
    jnz     1b
    incl    COUNTER
    testl   $COUNT_MASK, COUNTER
    jnz     count
    call    print_count
    jmp     count

/* prints "COUNT xxxxxxxx\r\n" with the counter in RAM */
print_count:
    mov     $msg_count, %si
    call    puts
    movl    COUNTER, %ebx
    mov     $8, %cx
1:  roll    $4, %ebx                    /* the most significant digit first */
    mov     %bl, %al
    and     $0x0f, %al
    cmp     $10, %al
    jb      2f
    add     $'a' - '0' - 10, %al
2:  add     $'0', %al
    call    putc
    loop    1b
    mov     $msg_crlf, %si
    call    puts
    ret

/* prints the NUL-terminated string at %cs:%si */
puts:
    movb    %cs:(%si), %al
    test    %al, %al
    jz      1f
    call    putc
    inc     %si
    jmp     puts
1:  ret

/* writes %al to COM1 once its transmitter holding register is empty; keeps every register */
putc:
    push    %dx
    push    %ax
    mov     $COM1+5, %dx                /* LSR */
1:  in      %dx, %al
    test    $0x20, %al                  /* THRE */
    jz      1b
    pop     %ax
    mov     $COM1, %dx
    out     %al, %dx
    pop     %dx
    ret

msg_boot:    .asciz "BOOT\r\n"
msg_pattern: .asciz "PATTERN\r\n"
msg_count:   .asciz "COUNT "
msg_crlf:    .asciz "\r\n"

/* the reset vector: the CPU starts at physical 0xFFFFFFF0, the image's last 16 bytes below 4 GiB */
    .org    0xFFF0
reset:
    ljmp    $0xF000, $start
    .org    0x10000
