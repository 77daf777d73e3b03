/* transport: what client.c and client_session.c share. Private. */
#ifndef HINGE_TX_CLIENT_IMPL_H
#define HINGE_TX_CLIENT_IMPL_H

#include <curl/curl.h>
#include <jansson.h>

#include "transport.h"

enum {
    TX_BASE_MAX = 384,       /* base URL, NUL included */
    TX_URL_MAX = 512,        /* base URL plus the longest path */
    TX_CTL_RESP_MAX = 65536, /* cap on a control response body (profile, session) */
    TX_STEP_RESP_MAX = 1024, /* cap on a step response body */
};

/* A response body buffer with a hard cap: the write callback refuses (and
 * the request fails) once cap would be passed. */
typedef struct tx_rbuf {
    char *data;  /* cap + 1 bytes: a NUL is kept after len */
    size_t cap;
    size_t len;
    bool over;   /* the peer sent more than cap */
} tx_rbuf;

struct tx_client {
    CURLM *multi;          /* owns the connection cache every request shares */
    CURL *ctl;             /* control requests: health, open, close */
    struct curl_slist *json_hdrs;
    char base_url[TX_BASE_MAX];
    char *cacert;          /* owned; NULL: system store */
    char *api_key;         /* owned; NULL: none */
    bool tls;
    bool h2c_up;           /* an h2c connection is believed open (see tx_perform) */
    bool timed_out;        /* the last request ran out of time (a stalled peer, not a lost one) */
    long connect_timeout_ms, timeout_ms;
    uint32_t spin_us;      /* busy-poll this long per request before sleeping */
    tx_rbuf ctl_resp;      /* TX_CTL_RESP_MAX */
    tx_client_stats stats;
};

/* Applies what every easy handle of c shares: HTTP version, timeouts, CA
 * file, handshake counter, response sink rb (borrowed, must outlive e). */
hinge_status tx_easy_setup(tx_client *c, CURL *e, tx_rbuf *rb);

/* Runs one request on e through c's multi handle until it completes or
 * times out. *http = the HTTP status; *us = wall time. Updates c->stats.
 * HINGE_ERR_NETWORK (connect, TLS, timeout), HINGE_ERR_PROTOCOL (not
 * HTTP/2, response over its cap). */
hinge_status tx_perform(tx_client *c, CURL *e, tx_rbuf *rb, long *http, uint64_t *us, char *err, size_t errlen);

/* Maps a non-2xx answer to a status and writes "edge answered N: error:
 * detail" into err from the JSON body in rb. */
hinge_status tx_http_error(long http, const tx_rbuf *rb, char *err, size_t errlen);

/* Parses rb as a JSON object; NULL (and err) when it is not one. */
json_t *tx_parse_object(const tx_rbuf *rb, char *err, size_t errlen);

uint64_t tx_now_us(void);

#endif
