"""A tiny llama GGUF (random weights, nonsense text) whose matrices are of
the weight types the Vulkan kernels read in sub-layouts (q5_1, q5_k, q3_k,
q2_k, iq4_nl; shaders/kernel_abi.h), mixed as quantizers mix them, for
test_vk_quant_model.sh: the device half against the CPU engine.
    scripts/gguf-python tests/device/make_vk_quant_model.py OUT.gguf"""
import os
import sys

import numpy as np
import gguf

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
import make_synthetic  # noqa: E402  (Maker: vocabulary, hyperparameters, writing)

T = gguf.GGMLQuantizationType
# Byte offsets of each block's f16 scales (d, dmin or m).
SCALES = {T.Q5_1: [0, 2], T.Q5_K: [0, 2], T.Q3_K: [108], T.Q2_K: [80, 82], T.IQ4_NL: [0]}
# Layer i's types: q, k, v, output, gate, up, down. Layer 0 gives the fused
# decode kernel two sub-layouts of one kernel (q|k q2_k, v q3_k); layer 2
# is Q3_K_M's mix (v q5_k), a pair without a fused kernel (q6_k's with
# q4_k's): its decode step runs unfused.
LAYERS = [
    [T.Q2_K, T.Q2_K, T.Q3_K, T.Q5_K, T.Q3_K, T.Q3_K, T.IQ4_NL],
    [T.Q5_1, T.Q5_1, T.Q5_1, T.IQ4_NL, T.Q5_K, T.Q5_K, T.Q2_K],
    [T.Q3_K, T.Q3_K, T.Q5_K, T.Q5_1, T.Q2_K, T.Q2_K, T.Q5_K],
]
C = dict(n_vocab=512, n_embd=256, n_layer=len(LAYERS), n_head=4, n_head_kv=2, head_dim=64, n_ff=512, n_ctx=128,
         rope_base=10000.0)


def quant(m, name, rows, cols, qt):
    """Random blocks of qt with small finite scales."""
    elems, nbytes = gguf.GGML_QUANT_SIZES[qt]
    nblk = rows * cols // elems
    raw = m.rng.integers(0, 256, size=(nblk, nbytes), dtype=np.uint8)
    for off in SCALES[qt]:
        d = m.rng.uniform(1e-3, 4e-3, size=nblk).astype(np.float16)
        raw[:, off:off + 2] = d.view(np.uint8).reshape(nblk, 2)
    m.w.add_tensor(name, raw.reshape(rows, cols // elems * nbytes), raw_dtype=qt)


def main(out):
    m = make_synthetic.Maker(out, "llama", "synthetic-tiny-vk-quant", 14)
    m.hparams(C)
    m.vocab(C["n_vocab"])
    d, ff = C["n_embd"], C["n_ff"]
    qd, kd = C["n_head"] * C["head_dim"], C["n_head_kv"] * C["head_dim"]
    quant(m, "token_embd.weight", C["n_vocab"], d, T.Q3_K)  # the device's embedding lookup
    m.norm("output_norm.weight", d)
    m.f32("output.weight", (C["n_vocab"], d), 1.0 / np.sqrt(d))
    for i, ty in enumerate(LAYERS):
        p = "blk.%d." % i
        m.norm(p + "attn_norm.weight", d)
        quant(m, p + "attn_q.weight", qd, d, ty[0])
        quant(m, p + "attn_k.weight", kd, d, ty[1])
        quant(m, p + "attn_v.weight", kd, d, ty[2])
        quant(m, p + "attn_output.weight", d, qd, ty[3])
        m.norm(p + "ffn_norm.weight", d)
        quant(m, p + "ffn_gate.weight", ff, d, ty[4])
        quant(m, p + "ffn_up.weight", ff, d, ty[5])
        quant(m, p + "ffn_down.weight", d, ff, ty[6])
    m.finish()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
