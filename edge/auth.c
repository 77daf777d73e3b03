/* Authentication: API keys and client identities.
 *
 * The key file holds no token, only each token's SHA-256: one key a line,
 * 64 lowercase hex digits, then optionally one space and the client's name
 * (up to EDGE_CLIENT_MAX - 1 printable bytes); blank lines and lines
 * starting with '#' are skipped. A key without a name is named after the
 * first 8 digits of its hash. The file is read at start and on SIGHUP; a
 * bad file leaves the keys in use as they are.
 *
 * A request names its client with "Authorization: Bearer TOKEN"; else the
 * connection's client certificate (mutual TLS) does. An open edge (neither
 * keys nor --client-ca) serves one anonymous client. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "edge_impl.h"

enum { KEYS_MAX = 65536, LINE_MAX_BYTES = 512 };

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* One line (without its newline) into k; false when malformed. */
static bool parse_line(const char *line, size_t len, edge_key *k)
{
    if (len < 64 || (len > 64 && (line[64] != ' ' || len == 65)))
        return false;
    for (int i = 0; i < 32; i++) {
        int hi = hex_digit(line[2 * i]), lo = hex_digit(line[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        k->hash[i] = (uint8_t)(hi << 4 | lo);
    }
    if (len == 64) {
        snprintf(k->name, sizeof k->name, "key-%.8s", line);
        return true;
    }
    size_t n = len - 65;
    if (n >= sizeof k->name)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)line[65 + i] < 0x21 || (unsigned char)line[65 + i] > 0x7e)
            return false; /* names go into logs and metrics: printable, no spaces */
    memcpy(k->name, line + 65, n);
    k->name[n] = '\0';
    return true;
}

static hinge_status read_keys(FILE *f, const char *path, edge_key **out, size_t *n_out, char *err, size_t errlen)
{
    edge_key *keys = NULL;
    size_t n = 0, cap = 0, lineno = 0;
    char line[LINE_MAX_BYTES];
    while (fgets(line, sizeof line, f)) {
        lineno++;
        size_t len = strlen(line);
        if (len == sizeof line - 1 && line[len - 1] != '\n') {
            free(keys);
            return hinge_fail(err, errlen, HINGE_ERR_FORMAT, "%s:%zu: line too long", path, lineno);
        }
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (len == 0 || line[0] == '#')
            continue;
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            edge_key *nk = ncap <= KEYS_MAX ? realloc(keys, ncap * sizeof *nk) : NULL;
            if (!nk) {
                free(keys);
                return hinge_fail(err, errlen, HINGE_ERR_NOMEM, "%s: over %d keys or out of memory", path, KEYS_MAX);
            }
            keys = nk;
            cap = ncap;
        }
        if (!parse_line(line, len, &keys[n])) {
            free(keys);
            return hinge_fail(err, errlen, HINGE_ERR_FORMAT,
                              "%s:%zu: expected 64 lowercase hex digits (a token's SHA-256), optionally a space "
                              "and a name without spaces",
                              path, lineno);
        }
        n++;
    }
    *out = keys;
    *n_out = n;
    return HINGE_OK;
}

static int key_order(const void *a, const void *b)
{
    return memcmp(((const edge_key *)a)->hash, ((const edge_key *)b)->hash, 32);
}

hinge_status edge_auth_load(hinge_edge *e, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return hinge_fail(err, errlen, HINGE_ERR_IO, "cannot read the API keys %s: %s", path, strerror(errno));
    edge_key *keys = NULL;
    size_t n = 0;
    hinge_status s = read_keys(f, path, &keys, &n, err, errlen);
    fclose(f);
    if (s != HINGE_OK)
        return s;
    if (n == 0) {
        free(keys);
        return hinge_fail(err, errlen, HINGE_ERR_FORMAT, "%s holds no key", path);
    }
    qsort(keys, n, sizeof *keys, key_order);
    if (!e->sha256 && !(e->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL))) {
        free(keys);
        return hinge_fail(err, errlen, HINGE_ERR_NOMEM, "OpenSSL has no SHA-256");
    }
    free(e->keys);
    e->keys = keys;
    e->n_keys = n;
    return HINGE_OK;
}

bool edge_auth_bearer(const hinge_edge *e, const uint8_t *value, size_t len, char *name, size_t cap)
{
    static const char scheme[] = "Bearer ";
    size_t sl = sizeof scheme - 1;
    if (len <= sl || strncasecmp((const char *)value, scheme, sl) != 0)
        return false;
    uint8_t h[32];
    unsigned int hl = 0;
    if (!e->n_keys || !EVP_Digest(value + sl, len - sl, h, &hl, e->sha256, NULL) || hl != 32)
        return false;
    /* Binary search over the sorted hashes: its time depends on where the
     * token's hash falls among the stored hashes, which tells nothing of a
     * token (preimage resistance; the hashes are no secret either). The
     * last step, the one that says whether the token is a key, compares in
     * constant time. */
    size_t lo = 0, hi = e->n_keys - 1;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (memcmp(e->keys[mid].hash, h, 32) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (CRYPTO_memcmp(h, e->keys[lo].hash, 32) != 0)
        return false;
    snprintf(name, cap, "%s", e->keys[lo].name);
    return true;
}

bool edge_auth_check(edge_conn *c, edge_stream *st)
{
    hinge_edge *e = c->e;
    if (!st->auth_given && !st->client[0] && c->cert_client[0])
        snprintf(st->client, sizeof st->client, "%s", c->cert_client);
    if (!e->auth_on)
        return true; /* open: one anonymous client */
    if (st->client[0] && !st->auth_bad)
        return true;
    e->auth_failures++;
    edge_log_limited(e, EDGE_RL_AUTH, HINGE_LOG_WARN, "%s %s: %s", c->peer, st->path,
                     st->auth_given ? "unknown API key" : "no credentials");
    edge_respond_error(c, st, 401, "unauthorized", "%s",
                       st->auth_given ? "the bearer token is not a key of this edge"
                                      : "send Authorization: Bearer TOKEN (or a client certificate)");
    return false;
}
