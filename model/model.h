/* hinge: a loaded model: architecture hyperparameters and weight views into
 * the mapped GGUF file. Shared by the device and the edge halves. */
#ifndef HINGE_MODEL_H
#define HINGE_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf.h"
#include "log.h"
#include "status.h"
#include "tokenizer.h"

typedef enum model_arch {
    ARCH_LLAMA = 0,  /* Llama 1-3 (Llama 3.1+: rope_freqs), Mistral, SmolLM */
    ARCH_GEMMA3 = 1,
    ARCH_QWEN2 = 2,  /* llama with q/k/v biases and NeoX RoPE */
    ARCH_QWEN3 = 3,  /* llama with per-head q/k RMS norms and NeoX RoPE */
    ARCH_PHI3 = 4,   /* llama with fused q/k/v and gate/up matrices and NeoX RoPE */
} model_arch;

/* "llama", "gemma3", "qwen2", "qwen3", "phi3": general.architecture's value. */
const char *model_arch_name(model_arch a);

typedef struct model_hparams {
    model_arch arch;
    uint32_t n_vocab;
    uint32_t n_embd;      /* hidden size */
    uint32_t n_layer;
    uint32_t n_head;      /* query heads */
    uint32_t n_head_kv;   /* key/value heads (GQA: n_head % n_head_kv == 0) */
    uint32_t head_dim;    /* per-head size of q and k */
    uint32_t head_dim_v;  /* per-head size of v */
    uint32_t n_ff;        /* feed-forward hidden size */
    uint32_t n_ctx_train; /* context the model was trained at */
    uint32_t rope_dim;    /* leading dims of each head that RoPE rotates */
    bool rope_neox;       /* pairs (i, i + rope_dim/2) instead of (2i, 2i+1) */
    float rope_base;      /* RoPE theta for global-attention layers */
    float rope_base_swa;  /* RoPE theta for sliding-window layers */
    float rope_scale;     /* positions are divided by this (linear scaling) */
    float rms_eps;
    float attn_scale;     /* multiplies q.k */
    float embd_scale;     /* multiplies the embedding (gemma: sqrt(n_embd)) */
    uint32_t swa_window;  /* sliding window in positions; 0: none */
    uint32_t swa_pattern; /* layer i slides unless (i + 1) % pattern == 0; 0: none */
    bool qk_norm;         /* per-head RMS norm of q and k (gemma3, qwen3) */
    bool post_norms;      /* norms after attention and after the FFN (gemma3) */
    bool gelu;            /* GeGLU (tanh GELU) instead of SwiGLU */
} model_hparams;

/* A weight matrix of rows x cols in the mapped file: row-major, each row
 * quant_row_bytes(type, cols) bytes. Vectors (norms) have rows == 1. */
typedef struct weight {
    const void *data; /* borrowed from the map */
    uint32_t type;    /* qtype */
    uint64_t rows, cols;
    const char *name; /* tensor name, for messages */
} weight;

typedef struct layer_weights {
    weight attn_norm;      /* (n_embd) f32 */
    weight wq;             /* (n_head*head_dim, n_embd); phi3: wq, wk, wv are row ranges of attn_qkv,
                              w_gate and w_up of ffn_up */
    weight wk;             /* (n_head_kv*head_dim, n_embd) */
    weight wv;             /* (n_head_kv*head_dim_v, n_embd) */
    weight wo;             /* (n_embd, n_head*head_dim_v) */
    weight bq, bk, bv;     /* (q dim), (k dim), (v dim) f32 biases of wq, wk, wv: qwen2 only */
    weight q_norm, k_norm; /* (head_dim) f32, gemma3 and qwen3 only */
    weight post_attn_norm; /* (n_embd) f32, gemma3 only */
    weight ffn_norm;       /* (n_embd) f32 */
    weight w_gate, w_up;   /* (n_ff, n_embd) */
    weight w_down;         /* (n_embd, n_ff) */
    weight post_ffn_norm;  /* (n_embd) f32, gemma3 only */
} layer_weights;

typedef struct model {
    gguf_file *file;      /* owned */
    tokenizer *tok;       /* owned */
    model_hparams hp;
    weight tok_embd;      /* (n_vocab, n_embd) */
    weight output_norm;   /* (n_embd) f32 */
    weight output;        /* (n_vocab, n_embd); tok_embd when tied */
    weight rope_freqs;    /* (rope_dim / 2) f32: RoPE frequency i is divided by rope_freqs[i] (Llama 3.1+'s
                             frequency scaling, precomputed by the converter); data NULL: none */
    layer_weights *layers; /* n_layer, owned */
    size_t weight_bytes;  /* all tensor bytes */
    uint8_t sha256[32];   /* of the whole file: the model's identity */
    char name[64];        /* general.name or the arch */
    char errmsg[HINGE_ERRMSG_MAX];
} model;

/* Opens the GGUF at path, reads the architecture's hyperparameters (with the
 * architecture's documented defaults for absent keys), checks every tensor's
 * presence, type and shape, and builds the tokenizer. hash_file: compute
 * sha256 (reads the whole file once). On failure *out is untouched and err
 * says what is wrong. lg may be NULL. */
hinge_status model_load(const char *path, bool hash_file, const hinge_logger *lg, model **out,
                        char *err, size_t errlen);
void model_free(model *m); /* NULL is a no-op */

/* Computes m->sha256 from the mapped file (model_load with hash_file does
 * it at load). HINGE_ERR_NOMEM when the digest fails. */
hinge_status model_hash(model *m, char *err, size_t errlen);

/* Bytes of one layer's weights. */
size_t model_layer_bytes(const model *m, uint32_t layer);

/* True when layer il uses sliding-window attention. */
static inline bool model_layer_is_swa(const model_hparams *hp, uint32_t il)
{
    return hp->swa_window > 0 && hp->swa_pattern > 0 && (il + 1) % hp->swa_pattern != 0;
}

/* RoPE theta for layer il. */
static inline float model_layer_rope_base(const model_hparams *hp, uint32_t il)
{
    return model_layer_is_swa(hp, il) ? hp->rope_base_swa : hp->rope_base;
}

#endif
