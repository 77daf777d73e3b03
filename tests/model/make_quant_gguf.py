"""Writes a GGUF of random weight blocks of every type hinge reads, each with
the gguf package's own dequantisation of it (numpy, a port of ggml's
reference dequantisers) as an f32 tensor: test_quant_gguf compares hinge's
decoders with it.
    scripts/gguf-python tests/model/make_quant_gguf.py OUT.gguf
Tensors: "w.TYPE" (ROWS x COLS of TYPE) and "ref.TYPE" (ROWS x COLS f32)."""
import sys

import numpy as np
import gguf

ROWS, COLS = 4, 512
T = gguf.GGMLQuantizationType
TYPES = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL"]
# Byte offsets of each block's f16 scales (d, dmin or m): set to finite values.
SCALES = {"Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0], "Q2_K": [80, 82],
          "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208], "IQ4_NL": [0]}


def main(out):
    rng = np.random.default_rng(14)
    w = gguf.GGUFWriter(out, "hinge-quant-test")
    for name in TYPES:
        qt = getattr(T, name)
        block_elems, block_bytes = gguf.GGML_QUANT_SIZES[qt]
        nblk = ROWS * COLS // block_elems
        raw = rng.integers(0, 256, size=(nblk, block_bytes), dtype=np.uint8)
        for off in SCALES[name]:
            scale = (rng.uniform(1e-3, 0.1, size=nblk) * rng.choice([-1, 1], size=nblk)).astype(np.float16)
            raw[:, off:off + 2] = scale.view(np.uint8).reshape(nblk, 2)
        raw = raw.reshape(ROWS, COLS // block_elems * block_bytes)
        ref = gguf.quants.dequantize(raw, qt).astype(np.float32)
        assert ref.shape == (ROWS, COLS) and np.isfinite(ref).all()
        w.add_tensor("w." + name.lower(), raw, raw_dtype=qt)
        w.add_tensor("ref." + name.lower(), ref)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    main(sys.argv[1])
