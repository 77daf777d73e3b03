/* threaded: generation on a worker thread, cancelled from the main thread.
 *
 *   threaded MODEL.gguf [CANCEL_MS [PROMPT]]
 *
 * The worker runs hinge_generate until the context is full (ignore_eos).
 * The main thread waits for the first piece, then CANCEL_MS milliseconds
 * (default 100), and calls hinge_cancel: the worker's call returns
 * HINGE_CANCELLED. The session is still usable: the main thread then carries
 * the conversation on for 16 more tokens, which continue the text exactly.
 * The text goes to stdout, the report to stderr. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <hinge/hinge.h>

typedef struct job {
    hinge_session *s;      /* used by the worker until it returns, then by main */
    const char *prompt;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int started, done;     /* under mu: the first piece came; the worker returned */
    int signalled;         /* the worker's own: started was set */
    hinge_status status;   /* the worker's hinge_generate, valid once done */
    char err[256];         /* its hinge_last_error(), which is per thread */
} job;

static void set_flag(job *j, int *flag)
{
    pthread_mutex_lock(&j->mu);
    *flag = 1;
    pthread_cond_signal(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

/* Runs on the thread that called hinge_generate. */
static int print_piece(const char *piece, size_t len, void *user)
{
    job *j = user;
    fwrite(piece, 1, len, stdout);
    fflush(stdout);
    if (j && !j->signalled) {
        j->signalled = 1;
        set_flag(j, &j->started);
    }
    return 0;
}

static void *worker(void *arg)
{
    job *j = arg;
    j->status = hinge_generate(j->s, j->prompt, 1 << 30, print_piece, j);
    snprintf(j->err, sizeof j->err, "%s", hinge_last_error());
    set_flag(j, &j->done);
    return NULL;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = ms % 1000 * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static void report(const hinge_session *s, const char *what, hinge_status st)
{
    static const char *const stops[] = {"none", "length", "eog", "callback", "context", "cancelled"};
    hinge_stats t;
    hinge_session_get_stats(s, &t);
    double per_s = t.decode_ms > 0 && t.generated_tokens > 1 ? (t.generated_tokens - 1) * 1e3 / t.decode_ms : 0;
    fprintf(stderr,
            "%s: %s; %u prompt + %u generated tokens, stop: %s; TTFT %.2f ms, decode %.2f ms (%.0f tokens/s); "
            "position %u of %u; session memory %.2f MiB\n",
            what, hinge_strerror(st), t.prompt_tokens, t.generated_tokens,
            (unsigned)t.stop < 6 ? stops[t.stop] : "?", t.ttft_ms, t.decode_ms, per_s, t.pos, t.n_ctx,
            (double)hinge_session_memory(s) / (1 << 20));
}

int main(int argc, char **argv)
{
    char *end = NULL;
    errno = 0;
    long cancel_ms = argc > 2 ? strtol(argv[2], &end, 10) : 100;
    if (argc < 2 || argc > 4 || (end && (errno || end == argv[2] || *end || cancel_ms < 0 || cancel_ms > 600000))) {
        fprintf(stderr, "usage: %s MODEL.gguf [CANCEL_MS [PROMPT]]\n", argv[0]);
        return 2;
    }
    hinge_model *m = NULL;
    job j = {.prompt = argc > 3 ? argv[3] : "", .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    hinge_session_config c;
    hinge_session_config_init(&c);
    c.ignore_eos = 1;
    hinge_status st = hinge_model_load(argv[1], &m);
    if (st == HINGE_OK)
        st = hinge_session_create(m, &c, &j.s);
    if (st != HINGE_OK) {
        fprintf(stderr, "threaded: %s: %s\n", hinge_strerror(st), hinge_last_error());
        hinge_model_free(m);
        return 1;
    }
    pthread_t t;
    if (pthread_create(&t, NULL, worker, &j) != 0) {
        fprintf(stderr, "threaded: cannot start a thread\n");
        return 1;
    }
    pthread_mutex_lock(&j.mu);
    while (!j.started && !j.done)
        pthread_cond_wait(&j.cv, &j.mu);
    pthread_mutex_unlock(&j.mu);
    sleep_ms(cancel_ms);
    hinge_cancel(j.s); /* any thread, any time */
    pthread_join(t, NULL);
    report(j.s, "worker", j.status);
    int rc = 0;
    if (j.status == HINGE_OK) {
        /* it ended first: the request is still pending and would stop the next call */
        fprintf(stderr, "threaded: the generation ended before the cancel; try a smaller CANCEL_MS\n");
        rc = 1;
    } else if (j.status != HINGE_CANCELLED) {
        fprintf(stderr, "threaded: %s: %s\n", hinge_strerror(j.status), j.err);
        rc = 1;
    } else {
        /* cancelled: the session carries on where the worker stopped */
        st = hinge_generate(j.s, "", 16, print_piece, NULL);
        fputc('\n', stdout);
        report(j.s, "main", st);
        if (st != HINGE_OK) {
            fprintf(stderr, "threaded: %s: %s\n", hinge_strerror(st), hinge_last_error());
            rc = 1;
        }
    }
    hinge_session_free(j.s);
    hinge_model_free(m);
    return rc;
}
