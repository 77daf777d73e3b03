#!/usr/bin/env python3
"""Compile one shader variant and write its SPIR-V as a C initializer.

    spirv_embed.py OUT.spv.h COMPILER ARGS... -o OUT.spv

Runs the compiler (glslc or glslangValidator, writing binary SPIR-V to the
path after -o), drops the debug instructions (names, source text, lines:
nothing a driver needs) and writes the words as "{0x..., ...}" to OUT.spv.h.

Why not glslc -O: spirv-opt inlines every function and unrolls every
[[unroll]] loop, and the rows kernels call their row product once per
specialization-constant row count and unroll it over 8 positions, so -O
output was 2 MB for one variant (12.5 MB of libhinge.so). Drivers inline
and unroll at pipeline creation anyway, once the specialization constants
are known, so the unoptimized module (with its calls) gives them the same
program in a fraction of the bytes.
"""
import struct
import subprocess
import sys

# OpSourceContinued, OpSource, OpSourceExtension, OpName, OpMemberName,
# OpString, OpLine, OpNoLine, OpModuleProcessed
DEBUG_OPS = {2, 3, 4, 5, 6, 7, 8, 317, 330}
OP_EXT_INST_IMPORT = 11


def strip(words):
    if len(words) < 5 or words[0] != 0x07230203:
        raise SystemExit("spirv_embed: not a SPIR-V module")
    out = words[:5]
    i = 5
    while i < len(words):
        n, op = words[i] >> 16, words[i] & 0xFFFF
        if n == 0 or i + n > len(words):
            raise SystemExit("spirv_embed: bad instruction length at word %d" % i)
        if op == OP_EXT_INST_IMPORT and b"NonSemantic" in struct.pack("<%dI" % (n - 2), *words[i + 2:i + n]):
            # non-semantic debug info refers to OpString: keep the module whole
            return words
        if op not in DEBUG_OPS:
            out += words[i:i + n]
        i += n
    return out


def main():
    out_h, cmd = sys.argv[1], sys.argv[2:]
    spv = cmd[cmd.index("-o") + 1]
    subprocess.run(cmd, check=True)
    data = open(spv, "rb").read()
    if len(data) % 4:
        raise SystemExit("spirv_embed: %s is not whole words" % spv)
    words = strip(list(struct.unpack("<%dI" % (len(data) // 4), data)))
    lines = []
    for k in range(0, len(words), 8):
        lines.append(", ".join("0x%08x" % w for w in words[k:k + 8]))
    with open(out_h, "w") as f:
        f.write("{\n" + ",\n".join(lines) + "\n}\n")


main()
