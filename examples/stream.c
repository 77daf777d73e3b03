/* stream: the smallest streaming app on libhinge. Prints the generated text
 * as it comes (greedy; the prompt itself is not printed).
 *
 *   stream MODEL.gguf [PROMPT [N_TOKENS [EDGE_URL CUT [CA.pem]]]]
 *
 * PROMPT defaults to "" (BOS alone), N_TOKENS to 64. With EDGE_URL the
 * first CUT layers run here and the rest on that hinge-edge. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include <hinge/hinge.h>

static int print_piece(const char *piece, size_t len, void *user)
{
    (void)user;
    fwrite(piece, 1, len, stdout);
    fflush(stdout);
    return 0; /* nonzero would stop the generation */
}

/* a number in [0, hi] from the command line, or -1 */
static long number(const char *s, long hi)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    return errno || end == s || *end || v < 0 || v > hi ? -1 : v;
}

int main(int argc, char **argv)
{
    hinge_session_config c;
    hinge_session_config_init(&c);
    long n = argc > 3 ? number(argv[3], 1 << 20) : 64;
    long cut = argc > 5 ? number(argv[5], 1 << 16) : 0;
    if (argc < 2 || argc == 5 || argc > 7 || n < 0 || cut < 0) {
        fprintf(stderr, "usage: %s MODEL.gguf [PROMPT [N_TOKENS [EDGE_URL CUT [CA.pem]]]]\n", argv[0]);
        return 2;
    }
    if (argc > 5) {
        c.edge_url = argv[4];
        c.cut = (int)cut;
        c.ca_file = argc > 6 ? argv[6] : NULL;
    }
    hinge_model *m = NULL;
    hinge_session *s = NULL;
    hinge_status st = hinge_model_load(argv[1], &m);
    if (st == HINGE_OK)
        st = hinge_session_create(m, &c, &s);
    if (st == HINGE_OK)
        st = hinge_generate(s, argc > 2 ? argv[2] : "", (int)n, print_piece, NULL);
    if (st == HINGE_OK)
        putchar('\n');
    else
        fprintf(stderr, "stream: %s: %s\n", hinge_strerror(st), hinge_last_error());
    hinge_session_free(s);
    hinge_model_free(m);
    return st == HINGE_OK ? 0 : 1;
}
