/* hinge: the contract between the compute shaders and their host code.
 *
 * Included by every compute shader (GLSL) and by device/vk_ C files, so it
 * holds only #defines that both languages read the same way: workgroup
 * sizes, binding indices and flag bits. Push-constant blocks are declared in
 * each .comp and mirrored in C next to the host code, with a _Static_assert
 * on the size.
 *
 * Device weight layout (written by device/vk_weights.c, read by
 * shaders/dequant.glsl): every row starts on a 16-byte boundary and is read
 * as 32-bit words; a "chunk" is 32 consecutive weights of a row.
 *   f32   the floats; rows padded to 4 words
 *   f16   halves two to a word (element 2i in the low half); padded to 4 words
 *   q8_0  nb = n/32: [nb x 8 words of int8 quants][ceil(nb/2) words of f16 d]
 *   q4_0  [nb x 4 words qs as in ggml][f16 d words]
 *   q5_0  [nb x 4 words qs][nb words qh][f16 d words]
 *   q4_1  [nb x 4 words qs][nb words d | m << 16]
 *   q4_k  nb = n/256 ggml blocks unchanged (144 bytes = 36 words each)
 *   q6_k  nb = n/256: [nb x 52 words: ql 32, qh 16, scales 4][f16 d words]
 * each row padded to a multiple of 4 words.
 *
 * Sub-layouts: five more GGUF types are read by the kernels of a type above
 * (no variants of their own: the SPIR-V embedded in libhinge.so grows by
 * their decoders only), told apart by a sub-layout number in the flags
 * (HK_F_SUB_SHIFT, a specialization constant: the other branch is gone
 * from the pipeline):
 *   iq4_nl  q4_0 kernels, sub 1: q4_0's layout; a quant is the index of
 *           its value in the IQ4_NL table
 *   q5_1    q4_1 kernels, sub 1: q4_1's, then [nb words qh as in q5_0]
 *   q5_k    q4_k kernels, sub 1: [nb x 36 words: d | dmin << 16, scales 3,
 *           qs 32 (a q4_k block)][nb x 8 words qh]
 *   q3_k    q6_k kernels, sub 1: [nb x 28 words: qs 16 (at q6_k's qh
 *           place in the arithmetic), hmask 8, 16 int8 scales (sc - 32)
 *           4][f16 d words]
 *   q2_k    q6_k kernels, sub 2: [nb x 20 words: qs 16, scales 4 (ggml's
 *           bytes: sc | m << 4)][nb words d | dmin << 16] */
#ifndef HINGE_KERNEL_ABI_H
#define HINGE_KERNEL_ABI_H

/* Workgroup size (x) of every kernel. */
#define HK_WG 64
/* Lanes that share one row in the split matvec (a power of two <= 8, the
 * smallest subgroup the split-subgroup variant accepts). */
#define HK_MV_LANES 8
/* Positions one invocation carries in matmul's prefill variant. */
#define HK_MM_POS 8
/* Positions per invocation of matmul_rows.comp (prefill on CPU devices). */
#define HK_MR_POS 32
/* ... and its rows per invocation at most (specialization constant 2;
 * decode's most, vk_matmul.c's rows_shape, for one position). */
#define HK_MR_MAX_RPL 8
/* matmul_tiled.comp (prefill on GPUs): a workgroup's tile of weight rows x
 * positions (HK_WG = HK_MT_ROWS / 2 * HK_MT_POS / 4 = 4 * HK_MT_POS), and
 * its shared memory in bytes. */
#define HK_MT_ROWS 32
#define HK_MT_POS 16
#define HK_MT_SHARED ((2 * HK_MT_ROWS * (HK_CHUNK + 1) + HK_MT_POS * HK_CHUNK) * 4)
/* Largest head_dim / head_dim_v the attention and rope kernels accept. */
#define HK_MAX_HEAD_DIM 512
/* Weights per chunk (see above). */
#define HK_CHUNK 32

/* matmul.comp, matvec.comp, matvec_rows.comp: y = W x (x: f32 activations) */
#define HK_MM_B_W 0    /* weight rows [row0, row0 + nrows) of the matrix */
#define HK_MM_B_X 1    /* x, f32 (vec4 reads: x_off and x_stride multiples of 4) */
#define HK_MM_B_Y 2    /* y, f32 */
#define HK_MM_B_W2 3   /* second matrix (up) for HK_F_SWIGLU / HK_F_GEGLU */
#define HK_MM_B_NORM 4 /* rms-norm weight (n floats) for HK_F_NORM */
#define HK_MM_B_RO 5   /* HK_F_RESNORM: o, laid out as x (the block's output before its post-norm) */
#define HK_MM_B_RW 6   /* HK_F_RESNORM: o's post-norm weight (n floats) */
#define HK_MM_B_XOUT 7 /* HK_F_RESNORM: x + norm(o) * rw, laid out as x; another buffer than x */
#define HK_MM_BINDINGS 8

/* qkv_rope.comp: the product bindings above (Y: the roped q; W2: the rows
 * from `split` on, of a second type), then */
#define HK_QR_B_KC 8     /* K cache (ctx, n_head_kv * head_dim) f32 */
#define HK_QR_B_VC 9     /* V cache (ctx, n_head_kv * head_dim) f32 */
#define HK_QR_B_QNORM 10 /* HK_F_QKNORM: (head_dim) f32 */
#define HK_QR_B_KNORM 11 /* HK_F_QKNORM: (head_dim) f32 */
#define HK_QR_B_FREQ 12  /* (rope_dim / 2) f32: base^(-2i/rope_dim) */
#define HK_QR_B_POS 13   /* uint added to pos0 (the decode step's position) */
#define HK_QR_BINDINGS 14

/* embed.comp */
#define HK_EM_B_W 0   /* embedding rows [row0, row0 + nrows) */
#define HK_EM_B_TOK 1 /* int32 token ids */
#define HK_EM_B_OUT 2 /* (m, n) f32 */
#define HK_EM_BINDINGS 3

/* rmsnorm.comp */
#define HK_RN_B_X 0
#define HK_RN_B_W 1
#define HK_RN_B_OUT 2
#define HK_RN_B_RES 3  /* residual for HK_F_ADD */
#define HK_RN_B_W2 4   /* second norm's weight for HK_F_NORM2 */
#define HK_RN_B_OUT2 5 /* second norm's output */
#define HK_RN_BINDINGS 6

/* rope_kv.comp */
#define HK_RK_B_QKV 0   /* (m, in_stride) f32: q | k | v per position */
#define HK_RK_B_Q 1     /* (m, q_stride) f32 out; may be the qkv buffer itself */
#define HK_RK_B_KC 2    /* K cache (ctx, n_head_kv * head_dim) f32 */
#define HK_RK_B_VC 3    /* V cache (ctx, n_head_kv * head_dim_v) f32 */
#define HK_RK_B_QNORM 4 /* (head_dim) f32 */
#define HK_RK_B_KNORM 5 /* (head_dim) f32 */
#define HK_RK_B_FREQ 6  /* (rope_dim / 2) f32: base^(-2i/rope_dim) */
#define HK_RK_B_POS 7   /* HK_F_POSBUF: uint added to pos0 */
#define HK_RK_BINDINGS 8

/* attention.comp */
#define HK_AT_B_Q 0
#define HK_AT_B_KC 1
#define HK_AT_B_VC 2
#define HK_AT_B_OUT 3
#define HK_AT_B_POS 4  /* HK_F_POSBUF: uint added to pos0 */
#define HK_AT_BINDINGS 5

/* layer.comp: a llama-style layer's decode step in one workgroup */
#define HK_LY_B_W 0      /* the layer's weights, a uniform texel buffer of uvec4 spanning
                            wq | wk | wv, wo, gate, up, down (one type; word offsets in the
                            push block) */
#define HK_LY_B_X 1      /* the residual, n_embd f32, updated in place */
#define HK_LY_B_ANORM 2  /* attn_norm (n_embd) f32 */
#define HK_LY_B_FNORM 3  /* ffn_norm (n_embd) f32 */
#define HK_LY_B_KC 4     /* K cache (ctx, n_head_kv * head_dim) f32, a texel buffer of vec4 */
#define HK_LY_B_VC 5     /* V cache, the same */
#define HK_LY_B_FREQ 6   /* (rope_dim / 2) f32 */
#define HK_LY_B_POS 7    /* uint added to pos0 */
#define HK_LY_B_KC2 8    /* the K cache again, a storage buffer (the row written) */
#define HK_LY_B_VC2 9    /* the V cache again */
#define HK_LY_BINDINGS 10
/* Floats of its shared memory: 2 n_embd + 2 q_dim + 2 kv_dim + max(q_dim + 2 kv_dim,
 * n_ff, HK_WG * (head_dim + 2)) must fit (device/vk_layer.c). */
#define HK_LY_FLOATS 3072

/* glu.comp and add.comp */
#define HK_EW_B_A 0 /* in/out */
#define HK_EW_B_B 1
#define HK_EW_BINDINGS 2

/* Flag bits (push constant "flags"). */
#define HK_F_ACC 1u     /* matmul/matvec: y += W x instead of y = W x */
#define HK_F_NORM 2u    /* matmul/matvec: x is rms-normed (times the norm weight) first */
#define HK_F_SWIGLU 4u  /* matmul/matvec: y = silu(W x) * (W2 x); glu: silu */
#define HK_F_GEGLU 8u   /* matmul/matvec: y = gelu_tanh(W x) * (W2 x); glu: gelu */
#define HK_F_ADD 16u    /* rmsnorm: out = res + norm(x) * w */
#define HK_F_NORM2 32u  /* rmsnorm: then out2 = norm(out) * w2 */
#define HK_F_NEOX 64u   /* rope: pairs (i, i + rope_dim/2) */
#define HK_F_QKNORM 128u /* rope: per-head rms norm of q and k first */
/* rope/attention: the first position is pos0 plus a uint the device reads
 * from a buffer at run time, so that a command buffer recorded once serves
 * every decode step (the host writes the position before each submit). */
#define HK_F_POSBUF 256u
/* matmul/matvec/qkv_rope: the input is norm(x + norm(o) * rw) * w (gemma3's
 * post-norm and residual add of the block before, done by its consumer);
 * workgroup 0 (of each position block) also stores x + norm(o) * rw into
 * x_out. Implies HK_F_NORM. */
#define HK_F_RESNORM 512u
/* Products, qkv_rope, embed: the sub-layout of W (bits 16..19; see the top)
 * and of W2 (bits 20..23; W's for a gated product). Set by the host from
 * the weights' types, not by callers. */
#define HK_F_SUB_SHIFT 16u
#define HK_F_SUB2_SHIFT 20u
#define HK_F_SUBS 0xFF0000u
#define HK_SUB_IQ4_NL 1u /* in q4_0's kernels */
#define HK_SUB_Q5_1 1u   /* in q4_1's */
#define HK_SUB_Q5_K 1u   /* in q4_k's */
#define HK_SUB_Q3_K 1u   /* in q6_k's */
#define HK_SUB_Q2_K 2u   /* in q6_k's */

#endif
