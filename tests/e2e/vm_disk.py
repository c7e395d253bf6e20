"""A bootable raw disk for the VM tests: one 512-byte boot sector, assembled
with binutils (as, ld), that SeaBIOS loads from the virtio disk. It prints
GITWARD-DISK-BOOT on the serial port and then, in the `honour` variant,
watches the ACPI power button (PIIX4 PM1 status, polled on each timer tick)
and, when it is pressed, prints GITWARD-POWER-BUTTON and powers the machine
off (PM1 control: S5). The other variant ignores the button, as a hung or
ACPI-less guest does. Boots in a fraction of a second under TCG."""
import os
import subprocess
import tempfile

BOOTED = "GITWARD-DISK-BOOT"
BUTTON = "GITWARD-POWER-BUTTON"

SOURCE = r"""
	.code16
	.text
	.globl _start
_start:
	cli
	xorw %ax, %ax
	movw %ax, %ds
	movw %ax, %ss
	movw $0x7c00, %sp
	movw $banner, %si
	call puts
	/* PIIX4 PM (00:01.3), config dword 0x40: the ACPI PM I/O base */
	movl $0x80000b40, %eax
	movw $0xcf8, %dx
	outl %eax, %dx
	movw $0xcfc, %dx
	inl %dx, %eax
	andw $0xffc0, %ax
	movw %ax, %bx
	cmpb $0, honour
	je idle
	/* PM1_EN: let the power button set its status bit */
	leaw 2(%bx), %dx
	movw $0x0100, %ax
	outw %ax, %dx
	sti
wait:
	hlt
	movw %bx, %dx
	inw %dx, %ax
	testw $0x0100, %ax
	jz wait
	movw $button, %si
	call puts
	/* PM1_CNT: SLP_TYP 0 (S5 in QEMU's ACPI tables) | SLP_EN */
	leaw 4(%bx), %dx
	movw $0x2000, %ax
	outw %ax, %dx
idle:
	sti
1:	hlt
	jmp 1b
puts:
	movw $0x3f8, %dx
2:	lodsb
	testb %al, %al
	jz 3f
	outb %al, %dx
	jmp 2b
3:	ret
banner:	.asciz "GITWARD-DISK-BOOT\r\n"
button:	.asciz "GITWARD-POWER-BUTTON\r\n"
	.org 509
honour:	.byte HONOUR
	.byte 0x55, 0xaa
"""


def build(out_dir, honour_power_button):
    """Write a 1 MiB raw disk image whose first sector boots; return its path."""
    name = "acpi" if honour_power_button else "deaf"
    path = os.path.join(out_dir, f"boot-{name}.img")
    with tempfile.TemporaryDirectory(prefix="gw-bootsector-") as work:
        src, obj, bin_ = (os.path.join(work, f) for f in ("boot.S", "boot.o", "boot.bin"))
        with open(src, "w") as f:
            f.write(SOURCE.replace("HONOUR", "1" if honour_power_button else "0"))
        subprocess.run(["as", "--32", "-o", obj, src], check=True, capture_output=True, timeout=60)
        subprocess.run(["ld", "-m", "elf_i386", "-Ttext", "0x7c00", "--oformat", "binary", "-o", bin_, obj],
                       check=True, capture_output=True, timeout=60)
        with open(bin_, "rb") as f:
            sector = f.read()
    if len(sector) != 512 or sector[510:] != b"\x55\xaa":
        raise RuntimeError(f"boot sector is {len(sector)} bytes, not a 512-byte sector with its signature")
    with open(path, "wb") as f:
        f.write(sector)
        f.truncate(1 << 20)
    return path
