"""GGUF files with random weights: tiny models of each architecture hinge
runs (for the numpy reference forward, tests/model/ref_forward.py) and the
exact shapes, types and metadata of real ones (for timing, memory and
partitioning studies). Every file says so in general.name and
general.description: its text is nonsense.
    scripts/make-synthetic ARCH OUT.gguf [SEED]
ARCH: tiny models: llama, llama3 (GQA, rope_freqs), qwen2 (q/k/v biases),
qwen3 (q/k norms), phi3 (fused q/k/v and gate/up), all f32 with 2 layers; real shapes (Q4_K_M as llama.cpp
assigns it: Q4_K, Q6_K for the output and for attn_v/ffn_down of the
layers it gives more bits): gemma3-1b, gemma3-4b, llama3.2-1b, llama3.2-3b."""
import math
import sys

import numpy as np
import gguf

T = gguf.GGMLQuantizationType

TINY = dict(n_vocab=300, n_embd=64, n_layer=2, n_head=4, n_head_kv=2, head_dim=16, n_ff=128, n_ctx=256)
# Shapes from the models' config.json (Hugging Face) and llama.cpp's GGUF metadata.
REAL = {
    "gemma3-1b": dict(arch="gemma3", n_vocab=262144, n_embd=1152, n_layer=26, n_head=4, n_head_kv=1,
                      head_dim=256, n_ff=6912, n_ctx=32768, rope_base=1e6, window=512, tied=True),
    "gemma3-4b": dict(arch="gemma3", n_vocab=262208, n_embd=2560, n_layer=34, n_head=8, n_head_kv=4,
                      head_dim=256, n_ff=10240, n_ctx=131072, rope_base=1e6, window=1024, rope_scale=8.0,
                      tied=True),
    "llama3.2-1b": dict(arch="llama", n_vocab=128256, n_embd=2048, n_layer=16, n_head=32, n_head_kv=8,
                        head_dim=64, n_ff=8192, n_ctx=131072, rope_base=500000.0, llama3_rope=(32.0, 1.0, 4.0, 8192),
                        tied=True),
    "llama3.2-3b": dict(arch="llama", n_vocab=128256, n_embd=3072, n_layer=28, n_head=24, n_head_kv=8,
                        head_dim=128, n_ff=8192, n_ctx=131072, rope_base=500000.0, llama3_rope=(32.0, 1.0, 4.0, 8192),
                        tied=True),
}


def llama3_rope_factors(dim, base, factor, low, high, old_ctx):
    """Llama 3.1's frequency divisors, as llama.cpp's converter computes them."""
    lo_wavelen, hi_wavelen = old_ctx / low, old_ctx / high
    out = []
    for i in range(0, dim, 2):
        wavelen = 2 * math.pi * base ** (i / dim)
        if wavelen < hi_wavelen:
            out.append(1.0)
        elif wavelen > lo_wavelen:
            out.append(factor)
        else:
            smooth = (old_ctx / wavelen - low) / (high - low)
            out.append(1.0 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def more_bits(i, n):
    """llama.cpp's use_more_bits: the layers Q4_K_M gives Q6_K attn_v/ffn_down."""
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


class Maker:
    def __init__(self, path, arch, name, seed):
        self.w = gguf.GGUFWriter(path, arch)
        self.arch = arch
        self.rng = np.random.default_rng(seed)
        self.w.add_name(name)
        self.w.add_description("SYNTHETIC: random weights, nonsense output; for timing, memory and "
                               "partitioning studies and reference tests (hinge scripts/make-synthetic)")

    def f32(self, name, shape, scale):
        self.w.add_tensor(name, (self.rng.standard_normal(shape) * scale).astype(np.float32))

    def norm(self, name, n):
        self.w.add_tensor(name, (1.0 + 0.1 * self.rng.standard_normal(n)).astype(np.float32))

    def quant(self, name, rows, cols, qt):
        """Random blocks of qt with small finite scales (no quantiser runs: fast at any size). Rows
        that are no whole number of 256-weight blocks get llama.cpp's fallback types (Gemma 3 1B's
        1152 columns: Q4_K becomes Q5_0, Q6_K becomes Q8_0)."""
        if cols % 256:
            qt = {T.Q4_K: T.Q5_0, T.Q6_K: T.Q8_0}[qt]
        elems, nbytes = gguf.GGML_QUANT_SIZES[qt]
        nblk = rows * cols // elems
        raw = self.rng.integers(0, 256, size=(nblk, nbytes), dtype=np.uint8)
        offs = {T.Q4_K: [0, 2], T.Q6_K: [208], T.Q5_0: [0], T.Q8_0: [0]}[qt]
        for off in offs:
            d = self.rng.uniform(2e-3, 6e-3, size=nblk).astype(np.float16)
            raw[:, off:off + 2] = d.view(np.uint8).reshape(nblk, 2)
        self.w.add_tensor(name, raw.reshape(rows, cols // elems * nbytes), raw_dtype=qt)

    def vocab(self, n):
        """A SentencePiece-style vocabulary: <unk> <s> </s>, 256 byte tokens, fillers."""
        toks = ["<unk>", "<s>", "</s>"] + ["<0x%02X>" % b for b in range(256)]
        toks += ["\u2581t%d" % i for i in range(n - len(toks))]
        types = [2, 3, 3] + [6] * 256 + [1] * (n - 259)
        self.w.add_tokenizer_model("llama")
        self.w.add_token_list(toks)
        self.w.add_token_scores([0.0] * n)
        self.w.add_token_types(types)
        self.w.add_bos_token_id(1)
        self.w.add_eos_token_id(2)
        self.w.add_unk_token_id(0)

    def hparams(self, c):
        w, a = self.w, self.arch
        w.add_context_length(c["n_ctx"])
        w.add_embedding_length(c["n_embd"])
        w.add_block_count(c["n_layer"])
        w.add_feed_forward_length(c["n_ff"])
        w.add_head_count(c["n_head"])
        w.add_head_count_kv(c["n_head_kv"])
        w.add_key_length(c["head_dim"])
        w.add_value_length(c["head_dim"])
        w.add_rope_dimension_count(c["head_dim"])
        w.add_rope_freq_base(c["rope_base"])
        w.add_layer_norm_rms_eps(1e-6 if a != "llama" else 1e-5)
        if a == "gemma3":
            w.add_sliding_window(c["window"])
            if c.get("rope_scale"):
                w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
                w.add_rope_scaling_factor(c["rope_scale"])

    def finish(self):
        self.w.write_header_to_file()
        self.w.write_kv_data_to_file()
        self.w.write_tensors_to_file()
        self.w.close()


def tiny(arch, path, seed):
    c = dict(TINY)
    hf = {"llama": "llama", "llama3": "llama", "qwen2": "qwen2", "qwen3": "qwen3", "phi3": "phi3"}[arch]
    c["rope_base"] = 500000.0 if arch == "llama3" else 10000.0
    m = Maker(path, hf, "synthetic-tiny-" + arch, seed)
    m.hparams(c)
    m.vocab(c["n_vocab"])
    d, hd, L = c["n_embd"], c["head_dim"], c["n_layer"]
    qd, kd = c["n_head"] * hd, c["n_head_kv"] * hd
    s = 1.0 / math.sqrt(d)
    m.f32("token_embd.weight", (c["n_vocab"], d), 1.0)
    m.norm("output_norm.weight", d)
    m.f32("output.weight", (c["n_vocab"], d), s)
    if arch == "llama3":  # a small original context, so that the three cases of the formula all occur
        m.w.add_tensor("rope_freqs.weight", llama3_rope_factors(hd, c["rope_base"], 8.0, 1.0, 4.0, 64))
    for i in range(L):
        p = "blk.%d." % i
        m.norm(p + "attn_norm.weight", d)
        if arch == "phi3":
            m.f32(p + "attn_qkv.weight", (qd + 2 * kd, d), s)
        else:
            m.f32(p + "attn_q.weight", (qd, d), s)
            m.f32(p + "attn_k.weight", (kd, d), s)
            m.f32(p + "attn_v.weight", (kd, d), s)
        if arch == "qwen2":
            m.f32(p + "attn_q.bias", (qd,), 0.5)
            m.f32(p + "attn_k.bias", (kd,), 0.5)
            m.f32(p + "attn_v.bias", (kd,), 0.5)
        if arch == "qwen3":
            m.norm(p + "attn_q_norm.weight", hd)
            m.norm(p + "attn_k_norm.weight", hd)
        m.f32(p + "attn_output.weight", (d, qd), 1.0 / math.sqrt(qd))
        m.norm(p + "ffn_norm.weight", d)
        if arch == "phi3":  # [gate; up]
            m.f32(p + "ffn_up.weight", (2 * c["n_ff"], d), s)
        else:
            m.f32(p + "ffn_gate.weight", (c["n_ff"], d), s)
            m.f32(p + "ffn_up.weight", (c["n_ff"], d), s)
        m.f32(p + "ffn_down.weight", (d, c["n_ff"]), 1.0 / math.sqrt(c["n_ff"]))
    m.finish()


def real(name, path, seed):
    c = REAL[name]
    a = c["arch"]
    m = Maker(path, a, "SYNTHETIC " + name + " (random weights, Q4_K_M shapes)", seed)
    m.hparams(c)
    m.vocab(c["n_vocab"])
    d, hd, L = c["n_embd"], c["head_dim"], c["n_layer"]
    qd, kd = c["n_head"] * hd, c["n_head_kv"] * hd
    # tied embeddings: llama.cpp's Q4_K_M gives token_embd Q6_K when it is also the output
    m.quant("token_embd.weight", c["n_vocab"], d, T.Q6_K)
    m.norm("output_norm.weight", d)
    if "llama3_rope" in c:
        m.w.add_tensor("rope_freqs.weight", llama3_rope_factors(hd, c["rope_base"], *c["llama3_rope"]))
    for i in range(L):
        p = "blk.%d." % i
        big = T.Q6_K if more_bits(i, L) else T.Q4_K
        m.norm(p + "attn_norm.weight", d)
        m.quant(p + "attn_q.weight", qd, d, T.Q4_K)
        m.quant(p + "attn_k.weight", kd, d, T.Q4_K)
        m.quant(p + "attn_v.weight", kd, d, big)
        m.quant(p + "attn_output.weight", d, qd, T.Q4_K)
        m.norm(p + "ffn_norm.weight", d)
        m.quant(p + "ffn_gate.weight", c["n_ff"], d, T.Q4_K)
        m.quant(p + "ffn_up.weight", c["n_ff"], d, T.Q4_K)
        m.quant(p + "ffn_down.weight", d, c["n_ff"], big)
        if a == "gemma3":
            m.norm(p + "attn_q_norm.weight", hd)
            m.norm(p + "attn_k_norm.weight", hd)
            m.norm(p + "post_attention_norm.weight", d)
            m.norm(p + "post_ffw_norm.weight", d)
    m.finish()


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    arch, out = sys.argv[1], sys.argv[2]
    seed = int(sys.argv[3]) if len(sys.argv) == 4 else 1
    if arch in ("llama", "llama3", "qwen2", "qwen3", "phi3"):
        tiny(arch, out, seed)
    elif arch in REAL:
        real(arch, out, seed)
    else:
        sys.exit("make-synthetic: unknown ARCH '%s'\n%s" % (arch, __doc__))


if __name__ == "__main__":
    main()
