#!/usr/bin/env python3
"""Writes the malformed GGUF files of this folder (run once; the files are
committed). Each name says what is wrong; tests/model/test_gguf.c opens
every *.gguf here and expects a failure with a message. Files found by the
fuzzer (scripts/fuzz) are added here as fuzz-<what>.gguf."""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
F32T, Q4_0T, Q8_0T = 0, 2, 8


def u32(v): return struct.pack('<I', v)
def u64(v): return struct.pack('<Q', v)
def gstr(s): s = s.encode() if isinstance(s, str) else s; return u64(len(s)) + s
def header(nt, nkv, version=3, magic=b'GGUF'): return magic + u32(version) + u64(nt) + u64(nkv)
def kv_u32(k, v): return gstr(k) + u32(U32) + u32(v)
def kv_str(k, v): return gstr(k) + u32(STR) + gstr(v)


def tinfo(name, ne, typ, off):
    return gstr(name) + u32(len(ne)) + b''.join(u64(x) for x in ne) + u32(typ) + u64(off)


def pad(b, a=32): return b + b'\0' * (-len(b) % a)


def valid_small():
    b = header(2, 2) + kv_str('general.architecture', 'llama')
    b += gstr('tokenizer.ggml.tokens') + u32(ARR) + u32(STR) + u64(2) + gstr('a') + gstr('b')
    b += tinfo('w', (32, 2), Q8_0T, 0) + tinfo('n', (8,), F32T, 96)
    return pad(b) + bytes(128)


FILES = {
    'empty.gguf': b'',
    'truncated-magic.gguf': b'GGU',
    'wrong-magic.gguf': b'GGML' + u32(3) + u64(0) + u64(0),
    'truncated-header.gguf': b'GGUF' + u32(3) + u64(0),
    'version-1.gguf': header(0, 0, version=1),
    'version-4.gguf': header(0, 0, version=4),
    'big-endian-version.gguf': header(0, 0, version=0x03000000),
    'absurd-tensor-count.gguf': header(1 << 60, 0),
    'absurd-kv-count.gguf': header(0, 1 << 60),
    'counts-exceed-file.gguf': header(100, 100),
    'key-length-past-end.gguf': header(0, 1) + u64(2**64 - 1) + b'general.name',
    'empty-key.gguf': header(0, 1) + u64(0) + u32(U8) + b'\0',
    'key-with-nul.gguf': header(0, 1) + gstr(b'tokenizer\0ggml') + u32(U8) + b'\0',
    'string-value-past-end.gguf': header(0, 1) + gstr('general.name') + u32(STR) + u64(1000) + b'abc',
    'string-array-element-past-end.gguf': header(0, 1) + gstr('tokenizer.ggml.tokens') + u32(ARR)
    + u32(STR) + u64(3) + gstr('a') + u64(1 << 62) + b'12345678',
    'unknown-value-type.gguf': header(0, 1) + gstr('k') + u32(13) + u32(0),
    'unknown-array-type.gguf': header(0, 1) + gstr('k') + u32(ARR) + u32(99) + u64(0),
    'nested-array.gguf': header(0, 1) + gstr('k') + u32(ARR) + u32(ARR) + u64(1) + u32(U8) + u64(0),
    'absurd-array-count.gguf': header(0, 1) + gstr('k') + u32(ARR) + u32(U32) + u64(1 << 60) + u32(0),
    'bool-value-2.gguf': header(0, 1) + gstr('b') + u32(BOOL) + b'\x02',
    'truncated-scalar.gguf': header(0, 1) + gstr('f') + u32(F64) + u32(0),
    'duplicate-key.gguf': header(0, 2) + kv_u32('dup', 1) + kv_u32('dup', 2),
    'alignment-zero.gguf': header(0, 1) + kv_u32('general.alignment', 0),
    'alignment-not-power-of-two.gguf': header(0, 1) + kv_u32('general.alignment', 48),
    'alignment-wrong-type.gguf': header(0, 1) + gstr('general.alignment') + u32(U64) + u64(32),
    'n-dims-0.gguf': pad(header(1, 0) + gstr('t') + u32(0) + u32(F32T) + u64(0)) + bytes(32),
    'n-dims-5.gguf': pad(header(1, 0) + tinfo('t', (4, 1, 1, 1, 1), F32T, 0)) + bytes(32),
    'ne-zero.gguf': pad(header(1, 0) + tinfo('t', (4, 0), F32T, 0)) + bytes(32),
    'unknown-tensor-type.gguf': pad(header(1, 0) + tinfo('t', (4, 2), 99, 0)) + bytes(32),
    'ne0-not-block-multiple.gguf': pad(header(1, 0) + tinfo('t', (33, 1), Q4_0T, 0)) + bytes(64),
    'element-count-overflow.gguf': pad(header(1, 0) + tinfo('t', (1 << 32, 1 << 32), F32T, 0)) + bytes(32),
    'byte-size-overflow.gguf': pad(header(1, 0) + tinfo('t', (1 << 62,), F32T, 0)) + bytes(32),
    'offset-not-aligned.gguf': pad(header(1, 0) + tinfo('t', (4, 2), F32T, 4)) + bytes(64),
    'data-past-end.gguf': pad(header(1, 0) + tinfo('t', (4, 2), F32T, 0)) + bytes(31),
    'offset-near-u64-max.gguf': pad(header(1, 0) + tinfo('t', (4, 2), F32T, 2**64 - 32)) + bytes(32),
    'overlapping-tensors.gguf': pad(header(2, 0) + tinfo('a', (16,), F32T, 0) + tinfo('b', (8,), F32T, 32))
    + bytes(64),
    'duplicate-tensor-name.gguf': pad(header(2, 0) + tinfo('same', (8,), F32T, 0)
                                      + tinfo('same', (8,), F32T, 32)) + bytes(64),
    'tensor-name-too-long.gguf': pad(header(1, 0) + tinfo('n' * 64, (8,), F32T, 0)) + bytes(32),
    'tensor-name-empty.gguf': pad(header(1, 0) + tinfo('', (8,), F32T, 0)) + bytes(32),
    'tensor-name-with-nul.gguf': pad(header(1, 0) + tinfo(b'a\0b', (8,), F32T, 0)) + bytes(32),
    'truncated-tensor-info.gguf': header(1, 0) + gstr('t') + u32(2) + u64(4),
    'truncated-data.gguf': valid_small()[:-1],
}


def main():
    for name, data in FILES.items():
        assert len(data) < 4096, name
        with open(os.path.join(HERE, name), 'wb') as f:
            f.write(data)
    print(f'wrote {len(FILES)} files to {HERE}')


if __name__ == '__main__':
    main()
