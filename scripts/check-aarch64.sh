#!/usr/bin/env bash
# Checks the aarch64 binary made by scripts/cross-aarch64.sh, on an x86_64 machine:
#   1. it is an AArch64 ELF (file, readelf -h);
#   2. it is portable ARMv8-A: no dot-product / i8mm / SVE instructions, which a
#      Raspberry Pi 4 (Cortex-A72, ARMv8.0-A) lacks; NEON is used;
#   3. its shared libraries (readelf -d) and the newest GLIBC symbol version it needs
#      (at most 2.36, Debian/Raspberry Pi OS bookworm);
#   4. stripped as shipped, under qemu-aarch64 it answers a prompt with SmolLM2-135M (exit 0, non-empty stdout),
#      with peak RSS from /usr/bin/time -v (under qemu: approximate, qemu's own memory included).
# Usage: scripts/check-aarch64.sh [BINARY] (default: $CARGO_TARGET_DIR or target/,
# then aarch64-unknown-linux-gnu/release/optillm). MODEL=path overrides the model file.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=aarch64-unknown-linux-gnu
SYSROOT=/usr/aarch64-linux-gnu
MAX_GLIBC=2.36
bin="${1:-${CARGO_TARGET_DIR:-target}/$TARGET/release/optillm}"
fail() { echo "FAIL: $*" >&2; exit 1; }

[ -x "$bin" ] || fail "no executable at $bin (run scripts/cross-aarch64.sh first)"
for tool in qemu-aarch64 aarch64-linux-gnu-readelf aarch64-linux-gnu-objdump aarch64-linux-gnu-nm \
  aarch64-linux-gnu-strip file; do
  command -v "$tool" >/dev/null || fail "$tool missing (scripts/cross-aarch64.sh installs it)"
done
echo "binary: $bin ($(stat -c %s "$bin") bytes)"

# 1. architecture
desc=$(file -b "$bin")
echo "file: $desc"
case "$desc" in *"ELF 64-bit"*"ARM aarch64"*) ;; *) fail "not an aarch64 ELF" ;; esac
machine=$(aarch64-linux-gnu-readelf -h "$bin" | sed -n 's/^ *Machine: *//p')
echo "readelf machine: $machine"
[ "$machine" = "AArch64" ] || fail "ELF machine is '$machine', not AArch64"

# 2. portability: instructions beyond ARMv8.0-A + NEON would die with SIGILL on a Pi 4.
# Without its symbol table objdump cannot tell code from the data that assembly keeps in .text
# (ring's), and would read that data as instructions (found: a stray "SVE" one in a string).
[ "$(aarch64-linux-gnu-nm "$bin" 2>/dev/null | grep -c ' ggml_vec_dot_q4_1_q8_1$')" -gt 0 ] ||
  fail "$bin has no symbol table (a stripped release build?): build it with scripts/cross-aarch64.sh, which keeps it"
disasm=$(mktemp)
trap 'rm -f "$disasm"' EXIT
aarch64-linux-gnu-objdump -d --no-show-raw-insn "$bin" >"$disasm"
vec=$'\tv[0-9]+\\.(16b|8b|8h|4h|4s|2s|2d)'
neon=$(grep -cE "$vec" "$disasm" || true)
# The Q4_1 dot product SmolLM2 runs on: its NEON path (smull/saddlp, no sdot).
kernel=$(aarch64-linux-gnu-objdump -d --no-show-raw-insn --disassemble=ggml_vec_dot_q4_1_q8_1 "$bin" |
  grep -cE "$vec" || true)
beyond=$(grep -cE $'\t(sdot|udot|usdot|sudot|smmla|ummla|usmmla|bfdot|bfmmla)\t|[[:space:],{]z[0-9]+\\.[bhsdq]' "$disasm" || true)
echo "NEON vector instructions: $neon in all, $kernel in ggml_vec_dot_q4_1_q8_1;" \
  "dotprod/i8mm/bf16/SVE instructions: $beyond"
[ "$kernel" -gt 20 ] || fail "ggml_vec_dot_q4_1_q8_1 has $kernel NEON instructions: NEON path missing?"
[ "$beyond" -eq 0 ] || fail "$beyond instructions beyond ARMv8.0-A + NEON (not portable to a Pi 4)"

# 3. shared libraries and glibc
needed=$(aarch64-linux-gnu-readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
echo "needed shared libraries: $needed"
glibc=$(aarch64-linux-gnu-objdump -T "$bin" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)
echo "newest GLIBC symbol version: $glibc (board needs glibc >= $glibc)"
[ "$(printf '%s\n%s\n' "$glibc" "$MAX_GLIBC" | sort -V | tail -1)" = "$MAX_GLIBC" ] ||
  fail "needs GLIBC_$glibc, newer than bookworm's $MAX_GLIBC"

# 4. generate text under qemu, with the binary as shipped: stripped
shipped=$(mktemp)
aarch64-linux-gnu-strip -o "$shipped" "$bin"
echo "stripped, as shipped: $(stat -c %s "$shipped") bytes"
run=(qemu-aarch64 -L "$SYSROOT" "$shipped")
home="${OPTILLM_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/optillm}"
model="${MODEL:-$home/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
if [ ! -f "$model" ] && [ -z "${MODEL:-}" ]; then
  echo "pulling the default model with the aarch64 binary (under qemu)"
  "${run[@]}" pull
fi
[ -f "$model" ] || fail "model file $model missing"

out=$(mktemp) err=$(mktemp) tv=$(mktemp)
trap 'rm -f "$disasm" "$shipped" "$out" "$err" "$tv"' EXIT
timer=()
[ -x /usr/bin/time ] && timer=(/usr/bin/time -v -o "$tv")
start=$(date +%s%N)
status=0
"${timer[@]}" "${run[@]}" run --model "$model" --max-tokens 8 --temperature 0 --threads 2 \
  "What is 2+2?" >"$out" 2>"$err" || status=$?
secs=$(awk -v a="$start" -v b="$(date +%s%N)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')
echo "--- stdout (qemu-aarch64, ${secs}s) ---"
cat "$out"; echo
echo "--- stderr (last lines) ---"
tail -n 5 "$err"
[ "$status" -eq 0 ] || fail "optillm run exited with $status under qemu"
grep -q '[^[:space:]]' "$out" || fail "optillm run printed no text on stdout"
if [ -s "$tv" ]; then
  rss=$(sed -n 's/^[[:space:]]*Maximum resident set size (kbytes): //p' "$tv")
  echo "peak RSS under qemu (approximate, includes qemu): ${rss} kB"
fi
echo "OK: aarch64 optillm generated text under qemu"
