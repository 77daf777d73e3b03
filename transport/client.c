/* The libcurl client: one multi handle per client, so that every request
 * of every session rides the same HTTP/2 connection (PIPEWAIT + multiplex),
 * and the request machinery the sessions use. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client_impl.h"

enum { DEFAULT_CONNECT_MS = 5000, DEFAULT_TIMEOUT_MS = 30000, POLL_MS = 1000, MAX_SPIN_US = 100000 };

uint64_t tx_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* libcurl write callback: appends to a capped tx_rbuf. */
static size_t on_write(char *ptr, size_t size, size_t nmemb, void *user)
{
    tx_rbuf *rb = user;
    size_t n = size * nmemb;
    if (n > rb->cap - rb->len) {
        rb->over = true;
        return 0; /* libcurl fails the transfer with CURLE_WRITE_ERROR */
    }
    memcpy(rb->data + rb->len, ptr, n);
    rb->len += n;
    rb->data[rb->len] = '\0';
    return n;
}

/* libcurl calls this once per new TLS connection, before its handshake. */
static CURLcode on_ssl_ctx(CURL *e, void *ssl_ctx, void *user)
{
    (void)e;
    (void)ssl_ctx;
    tx_client *c = user;
    c->stats.tls_handshakes++;
    return CURLE_OK;
}

hinge_status tx_easy_setup(tx_client *c, CURL *e, tx_rbuf *rb)
{
    CURLcode rc = CURLE_OK;
    long version = c->tls ? CURL_HTTP_VERSION_2TLS : CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE;
    rc |= curl_easy_setopt(e, CURLOPT_HTTP_VERSION, version);
    rc |= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, c->tls ? "https" : "http");
    rc |= curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
    rc |= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    rc |= curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    rc |= curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, c->connect_timeout_ms);
    rc |= curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, c->timeout_ms);
    rc |= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    rc |= curl_easy_setopt(e, CURLOPT_WRITEDATA, rb);
    if (c->api_key) { /* libcurl sends "Authorization: Bearer KEY" */
        rc |= curl_easy_setopt(e, CURLOPT_HTTPAUTH, CURLAUTH_BEARER);
        rc |= curl_easy_setopt(e, CURLOPT_XOAUTH2_BEARER, c->api_key);
    }
    if (c->tls) {
        if (c->cacert)
            rc |= curl_easy_setopt(e, CURLOPT_CAINFO, c->cacert);
        rc |= curl_easy_setopt(e, CURLOPT_SSL_CTX_FUNCTION, on_ssl_ctx);
        rc |= curl_easy_setopt(e, CURLOPT_SSL_CTX_DATA, c);
    }
    return rc == CURLE_OK ? HINGE_OK : HINGE_ERR_INVALID;
}

/* Drives the multi handle until e's transfer is done; its result. For the
 * first spin_us the socket is polled without sleeping (see
 * tx_client_config.spin_us). */
static CURLcode drive(tx_client *c, CURL *e)
{
    int running = 1;
    CURLcode result = CURLE_OK;
    bool done = false;
    uint64_t spin_end = c->spin_us ? tx_now_us() + c->spin_us : 0;
    while (!done) {
        if (curl_multi_perform(c->multi, &running) != CURLM_OK)
            return CURLE_FAILED_INIT;
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(c->multi, &left))) {
            if (msg->msg == CURLMSG_DONE && msg->easy_handle == e) {
                result = msg->data.result;
                done = true;
            }
        }
        int wait_ms = spin_end && tx_now_us() < spin_end ? 0 : POLL_MS;
        if (!done && curl_multi_poll(c->multi, NULL, 0, wait_ms, NULL) != CURLM_OK)
            return CURLE_FAILED_INIT;
    }
    return result;
}

static void account(tx_client *c, CURL *e, const tx_rbuf *rb)
{
    long connects = 0;
    curl_off_t up = 0;
    curl_easy_getinfo(e, CURLINFO_NUM_CONNECTS, &connects);
    curl_easy_getinfo(e, CURLINFO_SIZE_UPLOAD_T, &up);
    c->stats.connects += (uint64_t)(connects > 0 ? connects : 0);
    c->stats.bytes_up += (uint64_t)(up > 0 ? up : 0);
    c->stats.bytes_down += rb->len;
}

/* libcurl before 8.0.0 cannot reuse a connection opened with
 * CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE (curl issue 10634: it stacks a
 * second HTTP/2 layer on the live one). Work-around: prior knowledge only
 * while no h2c connection is up; then CURL_HTTP_VERSION_2_0, which reuses
 * the multiplexed connection. Should that connection be gone, 2_0 opens a
 * new one speaking HTTP/1.1 (Upgrade), which the edge refuses before any
 * request is processed: the request is then made again with prior
 * knowledge. */
static bool h2c_reuse_bug(const tx_client *c)
{
    return !c->tls && curl_version_info(CURLVERSION_NOW)->version_num < 0x080000;
}

static CURLcode run_once(tx_client *c, CURL *e, tx_rbuf *rb)
{
    rb->len = 0;
    rb->over = false;
    rb->data[0] = '\0';
    if (curl_multi_add_handle(c->multi, e) != CURLM_OK)
        return CURLE_FAILED_INIT;
    CURLcode rc = drive(c, e);
    curl_multi_remove_handle(c->multi, e);
    account(c, e, rb);
    return rc;
}

static CURLcode run_h2c(tx_client *c, CURL *e, tx_rbuf *rb)
{
    bool reuse = c->h2c_up;
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION,
                     (long)(reuse ? CURL_HTTP_VERSION_2_0 : CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE));
    CURLcode rc = run_once(c, e, rb);
    long connects = 0;
    curl_easy_getinfo(e, CURLINFO_NUM_CONNECTS, &connects);
    if (rc != CURLE_OK && reuse && connects > 0) { /* the h2c connection was gone */
        curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE);
        rc = run_once(c, e, rb);
    }
    c->h2c_up = rc == CURLE_OK;
    return rc;
}

bool tx_client_timed_out(const tx_client *c) { return c && c->timed_out; }

hinge_status tx_perform(tx_client *c, CURL *e, tx_rbuf *rb, long *http, uint64_t *us, char *err, size_t errlen)
{
    uint64_t t0 = tx_now_us();
    CURLcode rc = h2c_reuse_bug(c) ? run_h2c(c, e, rb) : run_once(c, e, rb);
    *us = tx_now_us() - t0;
    c->timed_out = rc == CURLE_OPERATION_TIMEDOUT;
    if (rc == CURLE_FAILED_INIT)
        return hinge_fail(err, errlen, HINGE_ERR_INVALID, "libcurl multi handle failed");
    if (rb->over)
        return hinge_fail(err, errlen, HINGE_ERR_PROTOCOL, "response body over %zu bytes", rb->cap);
    if (rc != CURLE_OK)
        return hinge_fail(err, errlen, HINGE_ERR_NETWORK, "%s: %s", c->base_url, curl_easy_strerror(rc));
    long version = 0;
    curl_easy_getinfo(e, CURLINFO_HTTP_VERSION, &version);
    if (version != CURL_HTTP_VERSION_2_0)
        return hinge_fail(err, errlen, HINGE_ERR_PROTOCOL, "%s did not speak HTTP/2", c->base_url);
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, http);
    c->stats.requests++;
    return HINGE_OK;
}

json_t *tx_parse_object(const tx_rbuf *rb, char *err, size_t errlen)
{
    json_error_t je;
    json_t *j = json_loadb(rb->data, rb->len, JSON_REJECT_DUPLICATES, &je);
    if (!j || !json_is_object(j)) {
        hinge_fail(err, errlen, HINGE_ERR_PROTOCOL, "response is not a JSON object: %s", j ? "" : je.text);
        json_decref(j);
        return NULL;
    }
    return j;
}

hinge_status tx_http_error(long http, const tx_rbuf *rb, char *err, size_t errlen)
{
    const char *what = "?", *detail = "";
    json_error_t je;
    json_t *j = json_loadb(rb->data, rb->len, 0, &je);
    if (j)
        json_unpack(j, "{s?s, s?s}", "error", &what, "detail", &detail);
    hinge_status s = HINGE_ERR_PROTOCOL;
    if (http == 404)
        s = HINGE_ERR_NOT_FOUND;
    else if (http == 408)
        s = HINGE_ERR_NETWORK;
    else if (http == 409 || http == 429 || http == 503)
        s = HINGE_ERR_RANGE;
    else if (http == 401 || http == 403)
        s = HINGE_ERR_INVALID;
    else if (http == 413)
        s = HINGE_ERR_NOMEM;
    else if (http == 422)
        s = HINGE_ERR_UNSUPPORTED;
    else if (http >= 400 && http < 500)
        s = HINGE_ERR_FORMAT;
    hinge_fail(err, errlen, s, "edge answered %ld: %s: %s", http, what, detail);
    json_decref(j);
    return s;
}

/* ---- the client ---- */

static hinge_status parse_base(tx_client *c, const char *url, char *err, size_t errlen)
{
    size_t len = url ? strlen(url) : 0;
    if (len == 0 || len >= TX_BASE_MAX)
        return hinge_fail(err, errlen, HINGE_ERR_INVALID, "edge URL missing or over %d bytes", TX_BASE_MAX - 1);
    if (strncmp(url, "https://", 8) == 0)
        c->tls = true;
    else if (strncmp(url, "http://", 7) == 0)
        c->tls = false;
    else
        return hinge_fail(err, errlen, HINGE_ERR_INVALID, "edge URL '%s' is not https:// or http://", url);
    memcpy(c->base_url, url, len + 1);
    while (len > 0 && c->base_url[len - 1] == '/')
        c->base_url[--len] = '\0';
    return HINGE_OK;
}

static hinge_status client_init(tx_client *c, const tx_client_config *cfg, char *err, size_t errlen)
{
    curl_version_info_data *v = curl_version_info(CURLVERSION_NOW);
    if (!(v->features & CURL_VERSION_HTTP2))
        return hinge_fail(err, errlen, HINGE_ERR_INVALID, "libcurl %s was built without HTTP/2", v->version);
    hinge_status s = parse_base(c, cfg->base_url, err, errlen);
    if (s != HINGE_OK)
        return s;
    c->connect_timeout_ms = cfg->connect_timeout_ms ? (long)cfg->connect_timeout_ms : DEFAULT_CONNECT_MS;
    c->timeout_ms = cfg->timeout_ms ? (long)cfg->timeout_ms : DEFAULT_TIMEOUT_MS;
    c->spin_us = cfg->spin_us < MAX_SPIN_US ? cfg->spin_us : MAX_SPIN_US;
    if ((cfg->cacert && !(c->cacert = strdup(cfg->cacert))) || (cfg->api_key && !(c->api_key = strdup(cfg->api_key))))
        return hinge_fail(err, errlen, HINGE_ERR_NOMEM, "out of memory");
    c->ctl_resp.cap = TX_CTL_RESP_MAX;
    c->ctl_resp.data = malloc(TX_CTL_RESP_MAX + 1);
    c->multi = curl_multi_init();
    c->ctl = curl_easy_init();
    c->json_hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    struct curl_slist *h2 = c->json_hdrs ? curl_slist_append(c->json_hdrs, "Expect:") : NULL;
    if (!c->ctl_resp.data || !c->multi || !c->ctl || !h2)
        return hinge_fail(err, errlen, HINGE_ERR_NOMEM, "out of memory creating curl handles");
    c->json_hdrs = h2;
    if (curl_multi_setopt(c->multi, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX) != CURLM_OK ||
        tx_easy_setup(c, c->ctl, &c->ctl_resp) != HINGE_OK ||
        curl_easy_setopt(c->ctl, CURLOPT_HTTPHEADER, c->json_hdrs) != CURLE_OK)
        return hinge_fail(err, errlen, HINGE_ERR_INVALID, "libcurl refused an option");
    return HINGE_OK;
}

hinge_status tx_client_create(const tx_client_config *cfg, tx_client **out, char *err, size_t errlen)
{
    if (!cfg || !out)
        return hinge_fail(err, errlen, HINGE_ERR_INVALID, "NULL config");
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return hinge_fail(err, errlen, HINGE_ERR_NOMEM, "curl_global_init failed");
    tx_client *c = calloc(1, sizeof *c);
    if (!c) {
        curl_global_cleanup();
        return hinge_fail(err, errlen, HINGE_ERR_NOMEM, "out of memory");
    }
    hinge_status s = client_init(c, cfg, err, errlen);
    if (s != HINGE_OK) {
        tx_client_destroy(c);
        return s;
    }
    *out = c;
    return HINGE_OK;
}

void tx_client_destroy(tx_client *c)
{
    if (!c)
        return;
    if (c->ctl)
        curl_easy_cleanup(c->ctl);
    if (c->multi)
        curl_multi_cleanup(c->multi);
    curl_slist_free_all(c->json_hdrs);
    free(c->ctl_resp.data);
    free(c->cacert);
    free(c->api_key);
    free(c);
    curl_global_cleanup();
}

void tx_client_get_stats(const tx_client *c, tx_client_stats *out)
{
    *out = c->stats;
}

static hinge_status get(tx_client *c, const char *path, uint64_t *us, char *err, size_t errlen)
{
    char url[TX_URL_MAX];
    snprintf(url, sizeof url, "%s%s", c->base_url, path);
    curl_easy_setopt(c->ctl, CURLOPT_URL, url);
    curl_easy_setopt(c->ctl, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(c->ctl, CURLOPT_CUSTOMREQUEST, NULL);
    long http = 0;
    hinge_status s = tx_perform(c, c->ctl, &c->ctl_resp, &http, us, err, errlen);
    if (s == HINGE_OK && http != 200)
        s = tx_http_error(http, &c->ctl_resp, err, errlen);
    return s;
}

hinge_status tx_client_profile(tx_client *c, char **text, size_t *len, char *err, size_t errlen)
{
    uint64_t us;
    hinge_status s = get(c, "/v1/profile", &us, err, errlen);
    if (s != HINGE_OK)
        return s;
    char *copy = malloc(c->ctl_resp.len + 1);
    if (!copy)
        return hinge_fail(err, errlen, HINGE_ERR_NOMEM, "out of memory");
    memcpy(copy, c->ctl_resp.data, c->ctl_resp.len);
    copy[c->ctl_resp.len] = '\0';
    *text = copy;
    *len = c->ctl_resp.len;
    return HINGE_OK;
}

hinge_status tx_client_health(tx_client *c, char *err, size_t errlen)
{
    uint64_t us;
    return get(c, "/v1/health", &us, err, errlen);
}
