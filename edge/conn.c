/* One client connection: non-blocking socket, TLS (OpenSSL, memory of
 * its own) or cleartext, and the nghttp2 session fed from it.
 *
 * A connection is only ever freed by the loop (edge_conns_reap) between
 * event batches: everything else marks it dead. So a pointer taken from an
 * epoll event stays valid for the whole batch. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>

#include "edge_impl.h"

static void set_interest(edge_conn *c, bool want_out)
{
    uint32_t ev = EPOLLIN | (want_out || c->tls_wants_out ? EPOLLOUT : 0);
    if (ev != c->events && edge_epoll_mod(c->e, c->fd, &c->watch, ev) == 0)
        c->events = ev;
}

enum { EVICT_IDLE_MS = 1000 }; /* a connection without a stream this long may give its place to a new one */

static void die(edge_conn *c, const char *why)
{
    if (c->dead)
        return;
    hinge_log(&c->e->log, HINGE_LOG_DEBUG, "%s: closing: %s", c->peer, why);
    c->dead = true;
    c->e->n_live--;
}

static bool any_stream(const edge_conn *c)
{
    for (int i = 0; i < EDGE_MAX_STREAMS; i++)
        if (c->streams[i].state != ES_FREE)
            return true;
    return false;
}

/* The live connection idle the longest (no stream for EVICT_IDLE_MS, or a
 * handshake that long unfinished); NULL when none. */
static edge_conn *eviction_victim(hinge_edge *e, uint64_t now)
{
    edge_conn *victim = NULL;
    for (uint32_t i = 0; i < e->conn_slots; i++) {
        edge_conn *c = e->conns[i];
        if (!c || c->dead || (c->handshaken && any_stream(c)) || now - c->last_stream_ms < EVICT_IDLE_MS)
            continue;
        if (!victim || c->last_stream_ms < victim->last_stream_ms)
            victim = c;
    }
    return victim;
}

const char *edge_conn_admit(hinge_edge *e, const char *addr)
{
    uint32_t same = 0;
    for (uint32_t i = 0; i < e->conn_slots; i++)
        if (e->conns[i] && !e->conns[i]->dead && strcmp(e->conns[i]->addr, addr) == 0)
            same++;
    if (same >= e->max_conns_per_addr)
        return "too many connections from this address";
    if (e->n_live < e->max_conns)
        return NULL;
    edge_conn *v = eviction_victim(e, edge_now_ms());
    if (!v)
        return "too many connections";
    e->conns_evicted++;
    if (v->h2)
        nghttp2_session_terminate_session(v->h2, NGHTTP2_NO_ERROR); /* one try at a GOAWAY */
    edge_conn_flush(v);
    die(v, "idle: its place went to a new connection");
    return NULL;
}

hinge_status edge_conn_open(hinge_edge *e, int fd, const char *peer, const char *addr, edge_conn **out)
{
    uint32_t slot = 0;
    while (slot < e->conn_slots && e->conns[slot])
        slot++;
    if (slot == e->conn_slots || e->n_live >= e->max_conns)
        return HINGE_ERR_RANGE;
    edge_conn *c = calloc(1, sizeof *c);
    if (!c)
        return HINGE_ERR_NOMEM;
    c->e = e;
    c->fd = fd;
    c->id = ++e->next_conn_id;
    c->watch = (edge_watch){EDGE_W_CONN, c};
    c->created_ms = c->last_io_ms = c->last_stream_ms = c->last_write_ms = edge_now_ms();
    snprintf(c->peer, sizeof c->peer, "%s", peer);
    snprintf(c->addr, sizeof c->addr, "%s", addr);
    hinge_status s = HINGE_OK;
    if (e->tls) {
        c->ssl = SSL_new(e->tls);
        if (!c->ssl || SSL_set_fd(c->ssl, fd) != 1)
            s = HINGE_ERR_NOMEM;
        else
            SSL_set_accept_state(c->ssl);
    } else {
        c->handshaken = true;
        s = edge_h2_session(c);
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &c->watch};
    if (s == HINGE_OK && epoll_ctl(e->ep, EPOLL_CTL_ADD, fd, &ev) != 0)
        s = HINGE_ERR_IO;
    if (s != HINGE_OK) {
        if (c->h2)
            nghttp2_session_del(c->h2);
        SSL_free(c->ssl);
        free(c);
        return s;
    }
    c->events = EPOLLIN;
    e->conns[slot] = c;
    e->n_conns++;
    e->n_live++;
    *out = c;
    return HINGE_OK;
}

static void handshake(edge_conn *c)
{
    ERR_clear_error();
    int rv = SSL_do_handshake(c->ssl);
    if (rv != 1) {
        int err = SSL_get_error(c->ssl, rv);
        if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
            set_interest(c, err == SSL_ERROR_WANT_WRITE);
            return;
        }
        char detail[160] = "";
        ERR_error_string_n(ERR_get_error(), detail, sizeof detail);
        c->e->handshakes_failed++;
        edge_log_limited(c->e, EDGE_RL_HANDSHAKE, HINGE_LOG_INFO, "%s: TLS handshake failed: %s", c->peer,
                         detail[0] ? detail : "?");
        die(c, detail[0] ? detail : "TLS handshake failed");
        return;
    }
    c->e->handshakes_ok++;
    edge_tls_client(c->ssl, c->cert_client, sizeof c->cert_client);
    const unsigned char *alpn = NULL;
    unsigned int alpn_len = 0;
    SSL_get0_alpn_selected(c->ssl, &alpn, &alpn_len);
    if (alpn_len != 2 || memcmp(alpn, "h2", 2) != 0) {
        die(c, "the client did not negotiate h2 (ALPN)");
        return;
    }
    c->handshaken = true;
    c->last_io_ms = edge_now_ms();
    if (edge_h2_session(c) != HINGE_OK)
        die(c, "out of memory for the HTTP/2 session");
    hinge_log(&c->e->log, HINGE_LOG_DEBUG, "%s: %s, h2", c->peer, SSL_get_version(c->ssl));
}

/* Reads one chunk: > 0 bytes, 0 nothing more for now, -1 dead. */
static ssize_t read_some(edge_conn *c, uint8_t *buf, size_t cap)
{
    if (c->ssl) {
        ERR_clear_error();
        int n = SSL_read(c->ssl, buf, (int)cap);
        if (n > 0)
            return n;
        int err = SSL_get_error(c->ssl, n);
        c->tls_wants_out = err == SSL_ERROR_WANT_WRITE; /* e.g. answering a key update into a full socket */
        if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
            return 0;
        die(c, err == SSL_ERROR_ZERO_RETURN ? "peer closed TLS" : "TLS read failed");
        return -1;
    }
    for (;;) {
        ssize_t n = recv(c->fd, buf, cap, 0);
        if (n > 0)
            return n;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        die(c, n == 0 ? "peer closed" : "read failed");
        return -1;
    }
}

static void conn_read(edge_conn *c)
{
    uint8_t buf[EDGE_READ_CHUNK];
    c->read_pending = false;
    for (int i = 0; i < EDGE_READS_PER_WAKE; i++) {
        ssize_t n = read_some(c, buf, sizeof buf);
        if (n <= 0)
            return;
        c->last_io_ms = edge_now_ms();
        c->e->bytes_in += (uint64_t)n;
        ssize_t rv = nghttp2_session_mem_recv(c->h2, buf, (size_t)n);
        if (rv < 0) {
            die(c, nghttp2_strerror((int)rv));
            return;
        }
    }
    c->read_pending = true; /* fairness cap reached: the loop comes back */
}

/* Writes out[out_off..out_len): true when all of it went. */
static bool write_out(edge_conn *c)
{
    while (c->out_off < c->out_len) {
        size_t left = c->out_len - c->out_off;
        ssize_t n;
        if (c->ssl) {
            ERR_clear_error();
            int w = SSL_write(c->ssl, c->out + c->out_off, (int)left);
            if (w <= 0) {
                int err = SSL_get_error(c->ssl, w);
                if (err != SSL_ERROR_WANT_WRITE && err != SSL_ERROR_WANT_READ)
                    die(c, "TLS write failed");
                return false;
            }
            n = w;
        } else {
            n = send(c->fd, c->out + c->out_off, left, MSG_NOSIGNAL);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                if (errno != EAGAIN && errno != EWOULDBLOCK)
                    die(c, "write failed");
                return false;
            }
        }
        c->out_off += (size_t)n;
        c->last_io_ms = c->last_write_ms = edge_now_ms();
        c->e->bytes_out += (uint64_t)n;
    }
    c->out_off = c->out_len = 0;
    return true;
}

void edge_conn_flush(edge_conn *c)
{
    if (c->dead || !c->h2)
        return;
    for (;;) {
        if (!write_out(c)) {
            if (!c->dead)
                set_interest(c, true);
            return;
        }
        if (!nghttp2_session_want_write(c->h2))
            break;
        int rv = nghttp2_session_send(c->h2);
        if (rv != 0) {
            die(c, nghttp2_strerror(rv));
            return;
        }
        if (c->out_len == 0)
            break;
    }
    if (!nghttp2_session_want_read(c->h2) && !nghttp2_session_want_write(c->h2)) {
        die(c, "HTTP/2 session finished");
        return;
    }
    set_interest(c, false);
}

void edge_conn_event(edge_conn *c, uint32_t events)
{
    if (c->dead)
        return;
    if (!c->handshaken)
        handshake(c);
    if (c->handshaken && !c->dead) {
        conn_read(c);
        edge_conn_flush(c);
    }
    if ((events & EPOLLERR) && !c->dead)
        die(c, "socket error");
}

void edge_conn_close(edge_conn *c)
{
    hinge_edge *e = c->e;
    for (int i = 0; i < EDGE_MAX_STREAMS; i++) {
        edge_stream *st = &c->streams[i];
        if (st->state != ES_FREE) {
            edge_api_stream_gone(st);
            free(st->resp_heap);
            st->resp_heap = NULL;
            st->state = ES_FREE;
        }
    }
    if (c->h2)
        nghttp2_session_del(c->h2);
    if (c->ssl) {
        if (c->handshaken)
            SSL_shutdown(c->ssl); /* one non-blocking try at close_notify */
        SSL_free(c->ssl);
    }
    close(c->fd);
    for (uint32_t i = 0; i < e->conn_slots; i++)
        if (e->conns[i] == c)
            e->conns[i] = NULL;
    e->n_conns--;
    if (!c->dead)
        e->n_live--;
    edge_sessions_orphan(e, c->id);
    free(c);
}

edge_conn *edge_conn_find(hinge_edge *e, uint64_t id)
{
    for (uint32_t i = 0; i < e->conn_slots; i++)
        if (e->conns[i] && e->conns[i]->id == id && !e->conns[i]->dead)
            return e->conns[i];
    return NULL;
}

/* A response the client does not take (its flow-control window stays shut,
 * or it stops reading the socket) holds the connection: drop it after
 * stall_ms without progress. True when it was dropped. */
static bool output_stalled(edge_conn *c, uint64_t now_ms)
{
    uint32_t stall = c->e->stall_ms;
    if (c->out_len > c->out_off && now_ms - c->last_write_ms > stall) {
        die(c, "the client stopped reading");
        return true;
    }
    for (int i = 0; i < EDGE_MAX_STREAMS; i++) {
        const edge_stream *st = &c->streams[i];
        if (st->state == ES_RESPONDED && st->resp_off < st->resp_len && now_ms - st->last_ms > stall) {
            die(c, "a response blocked by flow control");
            return true;
        }
    }
    return false;
}

void edge_conn_tick(edge_conn *c, uint64_t now_ms)
{
    hinge_edge *e = c->e;
    if (c->dead)
        return;
    if (!c->handshaken) {
        if (now_ms - c->created_ms > e->handshake_ms) {
            e->handshakes_failed++;
            edge_log_limited(e, EDGE_RL_HANDSHAKE, HINGE_LOG_INFO, "%s: TLS handshake timed out after %u ms",
                             c->peer, e->handshake_ms);
            die(c, "TLS handshake timed out");
        }
        return;
    }
    if (output_stalled(c, now_ms))
        return;
    for (int i = 0; i < EDGE_MAX_STREAMS; i++) {
        edge_stream *st = &c->streams[i];
        if (st->state == ES_RESPONDED && st->answered_ms && now_ms - st->answered_ms > e->stall_ms) {
            st->answered_ms = 0;
            nghttp2_submit_rst_stream(c->h2, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_NO_ERROR);
            continue;
        }
        if (st->req_done || now_ms - st->last_ms <= e->stall_ms)
            continue;
        if (st->state == ES_HEADERS) { /* nothing else may pass a half header block: the connection is stuck */
            die(c, "header block stalled");
            return;
        }
        if (st->state == ES_BODY)
            edge_api_stall(c, st);
    }
    if (!any_stream(c) && now_ms - c->last_stream_ms > e->idle_ms) {
        hinge_log(&e->log, HINGE_LOG_DEBUG, "%s: idle for %u ms", c->peer, e->idle_ms);
        nghttp2_session_terminate_session(c->h2, NGHTTP2_NO_ERROR);
    }
    edge_conn_flush(c);
}

void edge_conn_goaway(edge_conn *c)
{
    if (c->dead)
        return;
    if (!c->h2) {
        die(c, "stopping");
        return;
    }
    nghttp2_submit_goaway(c->h2, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(c->h2),
                          NGHTTP2_NO_ERROR, NULL, 0);
    edge_conn_flush(c);
}

bool edge_conn_busy(const edge_conn *c)
{
    if (c->dead || !c->h2)
        return false;
    return any_stream(c) || c->out_len > 0 || nghttp2_session_want_write(c->h2);
}

void edge_conns_reap(hinge_edge *e)
{
    for (uint32_t i = 0; i < e->conn_slots; i++)
        if (e->conns[i] && e->conns[i]->dead)
            edge_conn_close(e->conns[i]);
}
