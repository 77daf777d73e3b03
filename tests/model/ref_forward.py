"""An independent forward pass in numpy (float64) over a GGUF file read with
the gguf package, compared with the logits hinge's engine wrote
(tests/model/dump_logits.c):
    scripts/gguf-python tests/model/ref_forward.py MODEL.gguf LOGITS.f32 TOKEN...
Architectures: llama (with Llama 3.1's rope_freqs), qwen2 (q/k/v biases),
qwen3 (per-head q/k RMS norms), phi3 (attn_qkv = [q; k; v] and
ffn_up = [gate; up] by rows); NeoX RoPE for all but llama.

Tolerance: every row's largest |hinge - numpy| is at most 1e-5 of that row's
largest |logit|, and the argmax agrees (hinge computes in float32). The test
must be able to fail: the reference is also run with the architecture's
feature left out (no biases, no q/k norms, no rope_freqs, phi3's gate and
up halves swapped, or the other RoPE pairing), and that must miss hinge's logits by more than 100x the tolerance."""
import sys

import numpy as np
import gguf

TOL = 1e-5


class Model:
    def __init__(self, path):
        r = gguf.GGUFReader(path)
        self.arch = r.fields["general.architecture"].contents()
        kv = lambda k, d=None: r.fields[self.arch + "." + k].contents() if self.arch + "." + k in r.fields else d
        self.n_layer = kv("block_count")
        self.n_head = kv("attention.head_count")
        self.n_head_kv = kv("attention.head_count_kv", self.n_head)
        self.n_embd = kv("embedding_length")
        self.head_dim = kv("attention.key_length", self.n_embd // self.n_head)
        self.rope_dim = kv("rope.dimension_count", self.head_dim)
        self.base = kv("rope.freq_base", 10000.0)
        self.eps = kv("attention.layer_norm_rms_epsilon", 1e-6 if self.arch != "llama" else 1e-5)
        self.t = {}
        for t in r.tensors:
            a = t.data if t.tensor_type in (gguf.GGMLQuantizationType.F32,) else \
                gguf.quants.dequantize(t.data, t.tensor_type)
            self.t[t.name] = np.asarray(a, dtype=np.float64)
        self.neox = self.arch in ("qwen2", "qwen3", "phi3")

    def w(self, name):
        return self.t.get(name)


def rmsnorm(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def rope(x, pos, m, neox, freqs):
    """x: (n, heads, head_dim) at positions pos."""
    half = m.rope_dim // 2
    i = np.arange(half)
    theta = pos[:, None] * m.base ** (-2.0 * i / m.rope_dim)
    if freqs is not None:
        theta = theta / freqs
    c, s = np.cos(theta)[:, None, :], np.sin(theta)[:, None, :]
    x = x.copy()
    a = i if neox else 2 * i
    b = i + half if neox else 2 * i + 1
    x0, x1 = x[..., a].copy(), x[..., b].copy()
    x[..., a] = x0 * c - x1 * s
    x[..., b] = x0 * s + x1 * c
    return x


def split_fused(m, p, swap_glu):
    """phi3: the q/k/v and gate/up weights as row ranges of the fused matrices."""
    qd, kd = m.n_head * m.head_dim, m.n_head_kv * m.head_dim
    if m.w(p + "attn_qkv.weight") is not None:
        qkv = m.w(p + "attn_qkv.weight")
        q, k, v = qkv[:qd], qkv[qd:qd + kd], qkv[qd + kd:]
    else:
        q, k, v = (m.w(p + s + ".weight") for s in ("attn_q", "attn_k", "attn_v"))
    if m.w(p + "ffn_gate.weight") is None:
        up = m.w(p + "ffn_up.weight")
        g, u = up[:len(up) // 2], up[len(up) // 2:]
    else:
        g, u = m.w(p + "ffn_gate.weight"), m.w(p + "ffn_up.weight")
    return q, k, v, (u, g) if swap_glu else (g, u)


def forward(m, tokens, bias=True, qk_norm=True, freqs=True, neox=None, swap_glu=False):
    neox = m.neox if neox is None else neox
    rf = m.w("rope_freqs.weight") if freqs else None
    n, H, K, hd = len(tokens), m.n_head, m.n_head_kv, m.head_dim
    pos = np.arange(n, dtype=np.float64)
    x = m.w("token_embd.weight")[tokens]
    mask = np.triu(np.full((n, n), -np.inf), 1)
    for il in range(m.n_layer):
        p = "blk.%d." % il
        h = rmsnorm(x, m.w(p + "attn_norm.weight"), m.eps)
        wq, wk, wv, (wg, wu) = split_fused(m, p, swap_glu)
        q, k, v = h @ wq.T, h @ wk.T, h @ wv.T
        if bias and m.w(p + "attn_q.bias") is not None:
            q, k, v = q + m.w(p + "attn_q.bias"), k + m.w(p + "attn_k.bias"), v + m.w(p + "attn_v.bias")
        q, k, v = q.reshape(n, H, hd), k.reshape(n, K, hd), v.reshape(n, K, hd)
        if qk_norm and m.w(p + "attn_q_norm.weight") is not None:
            q = rmsnorm(q, m.w(p + "attn_q_norm.weight"), m.eps)
            k = rmsnorm(k, m.w(p + "attn_k_norm.weight"), m.eps)
        q, k = rope(q, pos, m, neox, rf), rope(k, pos, m, neox, rf)
        out = np.empty((n, H, hd))
        for hh in range(H):
            kh = hh // (H // K)
            sc = q[:, hh, :] @ k[:, kh, :].T / np.sqrt(hd) + mask
            sc = np.exp(sc - sc.max(axis=1, keepdims=True))
            out[:, hh, :] = (sc / sc.sum(axis=1, keepdims=True)) @ v[:, kh, :]
        x = x + out.reshape(n, H * hd) @ m.w(p + "attn_output.weight").T
        h = rmsnorm(x, m.w(p + "ffn_norm.weight"), m.eps)
        g, u = h @ wg.T, h @ wu.T
        x = x + (g / (1 + np.exp(-g)) * u) @ m.w(p + "ffn_down.weight").T
    out_w = m.w("output.weight") if m.w("output.weight") is not None else m.w("token_embd.weight")
    return rmsnorm(x, m.w("output_norm.weight"), m.eps) @ out_w.T


def worst(got, ref):
    return max(np.abs(got[i] - ref[i]).max() / np.abs(ref[i]).max() for i in range(len(ref)))


def main():
    path, logits_path, tokens = sys.argv[1], sys.argv[2], [int(t) for t in sys.argv[3:]]
    m = Model(path)
    ref = forward(m, tokens)
    got = np.fromfile(logits_path, dtype="<f4").reshape(len(tokens), -1).astype(np.float64)
    err = worst(got, ref)
    same_argmax = bool((got.argmax(axis=1) == ref.argmax(axis=1)).all())
    print("%s: %d tokens, largest error %.2e of a row's largest logit (tolerance %.0e), argmax %s" %
          (m.arch, len(tokens), err, TOL, "agrees" if same_argmax else "DIFFERS"))
    ok = err <= TOL and same_argmax
    # the feature this architecture adds must matter
    if m.arch == "qwen2":
        ablation = ("without the q/k/v biases", dict(bias=False))
    elif m.arch == "qwen3":
        ablation = ("without the q/k norms", dict(qk_norm=False))
    elif m.arch == "phi3":
        ablation = ("with the gate and up halves swapped", dict(swap_glu=True))
    elif m.w("rope_freqs.weight") is not None:
        ablation = ("without rope_freqs", dict(freqs=False))
    else:
        ablation = ("with NeoX RoPE pairs", dict(neox=True))
    off = worst(got, forward(m, tokens, **ablation[1]))
    print("  the reference %s misses by %.2e (must exceed %.0e)" % (ablation[0], off, 100 * TOL))
    ok = ok and off > 100 * TOL
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
