#!/bin/bash
# Prints the uncompressed ELF vmlinux held inside a bzImage (booting it directly via PVH
# skips in-guest decompression, which is slow under software emulation). The payload is
# located through the boot protocol's setup header (payload_offset/payload_length, 2.08+).
set -euo pipefail
img=$1
u() { od -An -tu"$2" -j "$1" -N "$2" "$img" | tr -d ' '; }
[ "$(od -An -c -j 514 -N 4 "$img" | tr -d " ")" = HdrS ] || { echo "extract-vmlinux: $img is not a bzImage" >&2; exit 1; }
setup_sects=$(u 0x1f1 1); [ "$setup_sects" = 0 ] && setup_sects=4
off=$(( (setup_sects + 1) * 512 + $(u 0x248 4) ))
len=$(u 0x24c 4)
magic=$(od -An -tx1 -j "$off" -N 4 "$img" | tr -d " ")
case $magic in
    02214c18) dec="lz4 -dc" ;;
    fd377a58) dec="xz -dc" ;;
    1f8b08*)  dec="gzip -dc" ;;
    28b52ffd) dec="zstd -dc" ;;
    *) echo "extract-vmlinux: unknown payload compression ($magic)" >&2; exit 1 ;;
esac
tail -c +$((off + 1)) "$img" | head -c "$len" | $dec 2>/dev/null || true
