#!/usr/bin/env bash
# Builds llama.cpp's llama-server from the llama.cpp tree vendored in the pinned llama-cpp-python
# sdist (taken from PyPI, checked against its sha256), only the server and llama-quantize targets
# (the embedded Q4_1 GGUF is re-quantized once to model.quantize), tuned to this CPU.
# The binary is cached per llama.cpp release and CPU kind, so a machine builds it once.
# Usage: scripts/build_llama_server.sh PYTHON   (prints the binary's path on its last line)
set -euo pipefail
PYTHON=${1:-python3}
VERSION=0.3.36
SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
CACHE=${SALON_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/salon}
# CPU kind = the instruction-set flags ggml's native build uses; another kind gets its own binary.
KIND=$(grep -m1 -E '^(flags|Features)' /proc/cpuinfo | tr ' ' '\n' \
  | grep -x -E 'avx2|avx512f|avx512_bf16|avx512_vnni|amx_tile|fma|f16c|asimd|sve' | sort -u \
  | tr '\n' '-' | sha256sum | cut -c1-10)
PREFIX="$CACHE/llama.cpp/$VERSION-$(uname -m)-$KIND"
BIN="$PREFIX/bin/llama-server"
QUANTIZE="$PREFIX/bin/llama-quantize"
if [ -x "$BIN" ] && [ -x "$QUANTIZE" ]; then echo "$BIN"; exit 0; fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
"$PYTHON" -m pip download --quiet --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$WORK" >&2
echo "$SHA256  $WORK/llama_cpp_python-$VERSION.tar.gz" | sha256sum --check --quiet >&2
tar xzf "$WORK/llama_cpp_python-$VERSION.tar.gz" -C "$WORK"
SRC="$WORK/llama_cpp_python-$VERSION/vendor/llama.cpp"
# No prebuilt web UI (it would be fetched from a model hub), no curl, no tests or examples.
cmake -S "$SRC" -B "$WORK/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
  -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
  -DLLAMA_BUILD_UI=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF \
  -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TOOLS=ON >&2
cmake --build "$WORK/build" --target llama-server llama-quantize -j "$(nproc)" >&2
mkdir -p "$PREFIX/bin"
cp "$WORK/build/bin/llama-quantize" "$QUANTIZE.tmp" && mv "$QUANTIZE.tmp" "$QUANTIZE"
cp "$WORK/build/bin/llama-server" "$BIN.tmp" && mv "$BIN.tmp" "$BIN"
# The LoRA converter and its gguf-py package travel with the binary (same release).
cp "$SRC/convert_lora_to_gguf.py" "$SRC/convert_hf_to_gguf.py" "$PREFIX/"
rm -rf "$PREFIX/gguf-py" "$PREFIX/conversion" && cp -r "$SRC/gguf-py" "$PREFIX/gguf-py"
[ -d "$SRC/conversion" ] && cp -r "$SRC/conversion" "$PREFIX/conversion"
echo "$BIN"
