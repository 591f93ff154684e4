#!/usr/bin/env bash
# Cross-builds the `optillm` CLI on x86_64 Debian/Ubuntu for aarch64-unknown-linux-gnu
# (Raspberry Pi 4/5 and other 64-bit ARM boards running a glibc >= 2.34 Linux, e.g.
# Raspberry Pi OS bookworm). Installs what is missing (Debian cross compilers, qemu-user
# for scripts/check-aarch64.sh, the Rust target), then runs
#   cargo build --release -p optillm --target aarch64-unknown-linux-gnu [extra cargo args]
# (with the binary's symbol table kept, see below) and prints the binary's path on the last line of stdout.
#
# The binary is portable ARMv8-A + NEON: llama-cpp-sys-2 sets GGML_NATIVE=OFF and
# GGML_CPU_ARM_ARCH=armv8-a for Linux aarch64, and this script refuses target-cpu=native.
# It links libgomp (OpenMP) and libstdc++ dynamically: the board needs `libgomp1`
# (see docs/raspberry-pi.md). Honours CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=aarch64-unknown-linux-gnu
SYSROOT=/usr/aarch64-linux-gnu

need=()
for pkg in cmake g++ libclang-dev gcc-aarch64-linux-gnu g++-aarch64-linux-gnu \
  libc6-dev-arm64-cross qemu-user file binutils; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing Debian packages: ${need[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >&2
fi

if ! rustup target list --installed | grep -qx "$TARGET"; then
  echo "adding Rust target $TARGET" >&2
  rustup target add "$TARGET" >&2
fi

case "${RUSTFLAGS:-} ${CARGO_ENCODED_RUSTFLAGS:-}" in
  *target-cpu=native*)
    echo "error: RUSTFLAGS has target-cpu=native; a cross-built binary must stay portable" >&2
    exit 2 ;;
esac

# C/C++ compilers and archiver for the cc and cmake crates (llama.cpp), the linker for rustc.
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export CXX_aarch64_unknown_linux_gnu=aarch64-linux-gnu-g++
export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
# bindgen (run by llama-cpp-sys-2 on every build) parses llama.h with the host's libclang
# for --target=aarch64-unknown-linux-gnu: point it at the cross sysroot's headers.
export BINDGEN_EXTRA_CLANG_ARGS_aarch64_unknown_linux_gnu="--sysroot=$SYSROOT"
# `cargo run --target aarch64-unknown-linux-gnu` and `cargo test --target ...` go through qemu.
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L $SYSROOT"

# The release profile strips the binary's symbol table (Cargo.toml); this build keeps it,
# because scripts/check-aarch64.sh needs symbols to tell code from the data that hand-written
# assembly (ring) keeps in .text. Ship it stripped: aarch64-linux-gnu-strip (docs/raspberry-pi.md).
start=$(date +%s)
cargo build --release -p optillm --target "$TARGET" \
  --config 'profile.release.package.optillm.strip="debuginfo"' "$@" >&2
echo "cross build took $(( $(date +%s) - start )) s" >&2

target_dir="${CARGO_TARGET_DIR:-target}"
case "$target_dir" in /*) ;; *) target_dir="$PWD/$target_dir" ;; esac
bin="$target_dir/$TARGET/release/optillm"
[ -x "$bin" ] || { echo "error: $bin was not produced" >&2; exit 1; }
echo "$bin"
