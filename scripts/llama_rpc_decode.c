/* llama_rpc_decode: llama.cpp's decode time per token, locally or with the
 * layers after a cut on a llama.cpp RPC server, for scripts/bench-split's
 * comparison with hinge's split. Not part of hinge: scripts/build-llama-rpc
 * compiles it against the llama.cpp it builds (llama.h's C API), so that the
 * figures come from the same protocol as split_generate's (a P-token prompt
 * from a file, then N greedy decode steps, each step timed on its own).
 *
 *   llama_rpc_decode --model M --prompt-file F --prompt-tokens P -n N
 *                    --threads T [--rpc HOST:PORT --cut K] [--verbose 1]
 *
 * With --rpc, n_gpu_layers = n_layer - K + 1: llama.cpp puts the last
 * n_gpu_layers of its n_layer + 1 "layers" (the blocks, then the output norm
 * and head) on the GPU devices, here the one RPC device, so layers [K, N),
 * the output norm and the head run on the server and the token embedding
 * and layers [0, K) here. Each step then sends the hidden state (and the
 * positions and mask) over plain TCP and reads back the logits. Both runs
 * use llama.cpp's plain CPU weight layout (no repacking, no AMX), the one the
 * server uses.
 * Prints one JSON object on stdout; llama.cpp's warnings (its whole log,
 * with the layer placement, under --verbose 1) go to stderr. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ggml-backend.h"
#include "ggml-rpc.h"
#include "gguf.h"
#include "llama.h"

#define MAX_PROMPT_BYTES (1 << 20)

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void quiet_log(enum ggml_log_level level, const char *text, void *user)
{
    if (*(const int *)user || level >= GGML_LOG_LEVEL_WARN)
        fputs(text, stderr);
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = malloc(MAX_PROMPT_BYTES + 1);
    size_t n = buf ? fread(buf, 1, MAX_PROMPT_BYTES, f) : 0;
    fclose(f);
    if (buf)
        buf[n] = '\0';
    return buf;
}

static bool no_progress(float progress, void *user)
{
    (void)progress, (void)user;
    return true;
}

/* "<arch>.block_count" from the GGUF header, -1 if absent: n_gpu_layers needs
 * it before the model loads. */
static int block_count(const char *path)
{
    struct gguf_init_params gp = {.no_alloc = true, .ctx = NULL};
    struct gguf_context *g = gguf_init_from_file(path, gp);
    if (!g)
        return -1;
    int n = -1;
    int64_t a = gguf_find_key(g, "general.architecture");
    if (a >= 0 && gguf_get_kv_type(g, a) == GGUF_TYPE_STRING) {
        char key[160];
        snprintf(key, sizeof key, "%.120s.block_count", gguf_get_val_str(g, a));
        int64_t b = gguf_find_key(g, key);
        if (b >= 0 && gguf_get_kv_type(g, b) == GGUF_TYPE_UINT32 && gguf_get_val_u32(g, b) <= 4096)
            n = (int)gguf_get_val_u32(g, b);
    }
    gguf_free(g);
    return n;
}

static llama_token argmax(const float *logits, int n_vocab)
{
    int best = 0;
    for (int i = 1; i < n_vocab; i++)
        if (logits[i] > logits[best])
            best = i;
    return best;
}

static int usage(void)
{
    fprintf(stderr, "usage: llama_rpc_decode --model M --prompt-file F --prompt-tokens P -n N --threads T"
                    " [--rpc HOST:PORT --cut K] [--verbose 1]\n");
    return 2;
}

int main(int argc, char **argv)
{
    const char *model_path = NULL, *prompt_file = NULL, *rpc = NULL;
    int n_prompt = 128, n_gen = 128, threads = 1, cut = -1, verbose = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--model")) model_path = v;
        else if (!strcmp(k, "--prompt-file")) prompt_file = v;
        else if (!strcmp(k, "--prompt-tokens")) n_prompt = atoi(v);
        else if (!strcmp(k, "-n")) n_gen = atoi(v);
        else if (!strcmp(k, "--threads")) threads = atoi(v);
        else if (!strcmp(k, "--rpc")) rpc = v;
        else if (!strcmp(k, "--cut")) cut = atoi(v);
        else if (!strcmp(k, "--verbose")) verbose = atoi(v);
        else return usage();
    }
    if (argc % 2 != 1 || !model_path || !prompt_file || n_prompt < 1 || n_gen < 1 || n_gen > 100000 ||
        threads < 1 || (rpc && cut < 0))
        return usage();

    llama_log_set(quiet_log, &verbose);
    llama_backend_init();
    if (rpc) {
        ggml_backend_reg_t reg = ggml_backend_rpc_add_server(rpc);
        if (!reg) {
            fprintf(stderr, "llama_rpc_decode: cannot reach the RPC server %s\n", rpc);
            return 1;
        }
        ggml_backend_register(reg);
    }

    int n_layer = block_count(model_path);
    if (n_layer < 1 || (rpc && cut > n_layer)) {
        fprintf(stderr, "llama_rpc_decode: %s: %d layers, cut %d\n", model_path, n_layer, cut);
        return 1;
    }
    struct llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = rpc ? n_layer - cut + 1 : 0;
    mp.progress_callback = no_progress;
    /* No repacked or AMX weight layouts: the RPC server holds plain ones, so
     * without this the split would change kernels as well as add the wire
     * (and the AMX path crashes on Gemma on this machine). */
    mp.use_extra_bufts = false;
    struct llama_model *model = llama_model_load_from_file(model_path, mp);
    if (!model || llama_model_n_layer(model) != n_layer) {
        fprintf(stderr, "llama_rpc_decode: cannot load %s with %d layers\n", model_path, n_layer);
        return 1;
    }
    const struct llama_vocab *vocab = llama_model_get_vocab(model);
    int n_vocab = llama_vocab_n_tokens(vocab);

    char *text = read_file(prompt_file);
    if (!text) {
        fprintf(stderr, "llama_rpc_decode: cannot read %s\n", prompt_file);
        return 1;
    }
    int len = (int)strlen(text);
    int n_tok = -llama_tokenize(vocab, text, len, NULL, 0, true, false);
    llama_token *toks = malloc(sizeof(*toks) * (size_t)(n_tok > 0 ? n_tok : 1));
    if (!toks || n_tok < n_prompt || llama_tokenize(vocab, text, len, toks, n_tok, true, false) < 0) {
        fprintf(stderr, "llama_rpc_decode: %s has %d tokens, %d wanted\n", prompt_file, n_tok, n_prompt);
        return 1;
    }

    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t)(n_prompt + n_gen + 16);
    cp.n_batch = cp.n_ubatch = (uint32_t)n_prompt;
    cp.n_threads = cp.n_threads_batch = threads;
    struct llama_context *ctx = llama_init_from_model(model, cp);
    if (!ctx) {
        fprintf(stderr, "llama_rpc_decode: cannot create a context\n");
        return 1;
    }

    double *step = malloc(sizeof(*step) * (size_t)n_gen);
    double t0 = now_us();
    if (!step || llama_decode(ctx, llama_batch_get_one(toks, n_prompt)) != 0) {
        fprintf(stderr, "llama_rpc_decode: prompt decode failed\n");
        return 1;
    }
    llama_token tok = argmax(llama_get_logits_ith(ctx, -1), n_vocab);
    double ttft = now_us() - t0, sum = 0;
    /* A step is what split_generate times: decode the last token, pick the next. */
    for (int i = 0; i < n_gen; i++) {
        double s = now_us();
        if (llama_decode(ctx, llama_batch_get_one(&tok, 1)) != 0) {
            fprintf(stderr, "llama_rpc_decode: decode step %d failed\n", i);
            return 1;
        }
        tok = argmax(llama_get_logits_ith(ctx, -1), n_vocab);
        step[i] = now_us() - s;
        sum += step[i];
    }
    double first = step[0];
    qsort(step, (size_t)n_gen, sizeof(*step), cmp_double);
    printf("{\"mode\": \"%s\", \"cut\": %d, \"n_layer\": %d, \"n_gpu_layers\": %d, \"prompt_tokens\": %d,"
            " \"generated\": %d, \"ttft_us\": %.1f, \"tpot_us\": %.2f, \"tpot_p50_us\": %.2f, \"first_step_us\": %.1f}\n",
           rpc ? "llama-rpc" : "llama-local", cut, n_layer, mp.n_gpu_layers, n_prompt, n_gen, ttft, sum / n_gen,
           step[n_gen / 2], first);
    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    free(step);
    free(toks);
    free(text);
    return 0;
}
