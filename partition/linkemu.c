/* hinge-linkemu's engine: see linkemu.h for the link model. */
#include "linkemu.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

/* epoll tags: the three loop fds, then 2 * slot + side for connections */
enum { TAG_LISTEN = 0, TAG_STOP = 1, TAG_TIMER = 2, TAG_CONN0 = 8, MAX_EVENTS = 64, ACCEPT_BURST = 16 };

/* Chunks read less than this apart belong to one burst and share a jitter
 * draw: back-to-back packets see the same queueing delay. */
#define BURST_GAP_NS 1000000u

typedef struct chunk {
    uint64_t release_ns;
    uint16_t len, off; /* bytes held; bytes already written */
    uint8_t data[LINKEMU_SEG_PAYLOAD];
} chunk;

/* One direction of one connection: a FIFO of chunks in release order. */
typedef struct dir {
    chunk *q;     /* ring of cap */
    uint32_t head, len;
    uint64_t last_release_ns;
    uint64_t last_read_ns; /* when the previous chunk was read */
    double jitter_s;       /* the current burst's jitter draw */
    bool eof;     /* the source ended: shut the destination once drained */
    bool shut;    /* the destination's write side is shut (or dead) */
    bool blocked; /* the destination said EAGAIN: wait for EPOLLOUT */
} dir;

typedef struct conn {
    bool used;
    int fd[2];      /* 0: client, 1: upstream */
    uint32_t ev[2]; /* registered interest */
    bool gone[2];   /* hung up: removed from epoll */
    dir d[2];       /* d[s] reads fd[s] and writes fd[1 - s]; 0 is the uplink */
} conn;

/* The token bucket of one link direction, shared by all connections. */
typedef struct bucket {
    double tokens; /* bytes, at t_ns */
    uint64_t t_ns; /* >= the last departure */
} bucket;

struct part_linkemu {
    part_link_dir link[2];
    bucket bk[2];
    int lfd, epfd, stopfd, tfd;
    uint16_t port;
    struct sockaddr_in upstream;
    conn *conns; /* max_conns */
    uint32_t max_conns, cap; /* cap: chunks per direction */
    uint64_t rng;
    atomic_bool stop_asked, cut_asked; /* set by stop and cut from any thread, then stopfd written */
    double then_after_s; /* > 0: the links change to then[] */
    part_link_dir then[2];
    bool stop;
    part_linkemu_stats st;
    char errmsg[HINGE_ERRMSG_MAX];
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Uniform in [0, 1): splitmix64. */
static double rand_unit(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    z ^= z >> 31;
    return (double)(z >> 11) * 0x1.0p-53;
}

static hinge_status parse_addr(const char *s, struct sockaddr_in *out, char *err, size_t errlen)
{
    const char *colon = s ? strrchr(s, ':') : NULL;
    char host[64];
    if (!colon || (size_t)(colon - s) >= sizeof host)
        return hinge_fail(err, errlen, HINGE_ERR_INVALID, "address '%s' is not IPV4:PORT", s ? s : "(null)");
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    char *end;
    errno = 0;
    unsigned long port = strtoul(colon + 1, &end, 10);
    *out = (struct sockaddr_in){.sin_family = AF_INET};
    if (errno || end == colon + 1 || *end || port > 65535 || inet_pton(AF_INET, host, &out->sin_addr) != 1)
        return hinge_fail(err, errlen, HINGE_ERR_INVALID, "address '%s' is not a numeric IPV4:PORT", s);
    out->sin_port = htons((uint16_t)port);
    return HINGE_OK;
}

static hinge_status check_dir(const char *name, const part_link_dir *d, char *err, size_t errlen)
{
    bool ok = d->rate_bps >= 0 && d->rate_bps < 1e13 && d->burst_bytes >= 0 && d->burst_bytes < 1e9 &&
              d->delay_s >= 0 && d->delay_s < 60 && d->jitter_s >= 0 && d->jitter_s < 60 && d->loss >= 0 &&
              d->loss < 1 && d->loss_penalty_s >= 0 && d->loss_penalty_s < 60;
    if (!ok)
        return hinge_fail(err, errlen, HINGE_ERR_INVALID,
                          "%s link: rate %g bit/s, burst %g B, delay %g s, jitter %g s, loss %g, penalty %g s: "
                          "out of range",
                          name, d->rate_bps, d->burst_bytes, d->delay_s, d->jitter_s, d->loss, d->loss_penalty_s);
    return HINGE_OK;
}

static int epoll_add(int epfd, int fd, uint32_t events, uint64_t tag)
{
    struct epoll_event ev = {.events = events, .data.u64 = tag};
    return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
}

static hinge_status open_listener(part_linkemu *l, const struct sockaddr_in *addr, char *err, size_t errlen)
{
    int one = 1;
    struct sockaddr_in bound;
    socklen_t blen = sizeof bound;
    l->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (l->lfd < 0 || setsockopt(l->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(l->lfd, (const struct sockaddr *)addr, sizeof *addr) != 0 || listen(l->lfd, 64) != 0 ||
        getsockname(l->lfd, (struct sockaddr *)&bound, &blen) != 0)
        return hinge_fail(err, errlen, HINGE_ERR_NETWORK, "listen: %s", strerror(errno));
    l->port = ntohs(bound.sin_port);
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    l->stopfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    l->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (l->epfd < 0 || l->stopfd < 0 || l->tfd < 0 || epoll_add(l->epfd, l->lfd, EPOLLIN, TAG_LISTEN) != 0 ||
        epoll_add(l->epfd, l->stopfd, EPOLLIN, TAG_STOP) != 0 || epoll_add(l->epfd, l->tfd, EPOLLIN, TAG_TIMER) != 0)
        return hinge_fail(err, errlen, HINGE_ERR_NETWORK, "epoll set-up: %s", strerror(errno));
    return HINGE_OK;
}

/* l->link[] = up, down with their defaults filled in. */
static void set_links(part_linkemu *l, const part_link_dir *up, const part_link_dir *down)
{
    double rtt = up->delay_s + down->delay_s;
    for (int s = 0; s < 2; s++) {
        part_link_dir *d = &l->link[s];
        *d = s == 0 ? *up : *down;
        if (d->burst_bytes <= 0)
            d->burst_bytes = 2.0 * (LINKEMU_SEG_PAYLOAD + LINKEMU_SEG_HEADER);
        if (d->loss_penalty_s <= 0)
            d->loss_penalty_s = fmax(2.0 * rtt, 0.010);
        if (l->bk[s].tokens > d->burst_bytes || l->bk[s].t_ns == 0)
            l->bk[s].tokens = d->burst_bytes;
    }
}

static void set_defaults(part_linkemu *l, const part_linkemu_config *cfg)
{
    set_links(l, &cfg->up, &cfg->down);
    l->then_after_s = cfg->then_after_s;
    l->then[0] = cfg->then_up;
    l->then[1] = cfg->then_down;
    size_t qb = cfg->queue_bytes ? cfg->queue_bytes : (size_t)2 << 20;
    l->cap = (uint32_t)(qb / LINKEMU_SEG_PAYLOAD) + 1;
    l->max_conns = cfg->max_conns ? cfg->max_conns : 64;
    l->rng = cfg->seed;
}

hinge_status part_linkemu_create(const part_linkemu_config *cfg, part_linkemu **out, char *err, size_t errlen)
{
    struct sockaddr_in la;
    hinge_status s = parse_addr(cfg->listen, &la, err, errlen);
    part_linkemu *l = NULL;
    if (s == HINGE_OK)
        s = check_dir("up", &cfg->up, err, errlen);
    if (s == HINGE_OK)
        s = check_dir("down", &cfg->down, err, errlen);
    if (s == HINGE_OK && cfg->then_after_s > 0)
        s = check_dir("then up", &cfg->then_up, err, errlen);
    if (s == HINGE_OK && cfg->then_after_s > 0)
        s = check_dir("then down", &cfg->then_down, err, errlen);
    if (s == HINGE_OK && !(cfg->then_after_s >= 0 && cfg->then_after_s < 86400))
        s = hinge_fail(err, errlen, HINGE_ERR_INVALID, "then_after_s %g out of [0, 86400)", cfg->then_after_s);
    if (s == HINGE_OK && (cfg->queue_bytes > ((size_t)1 << 30) || cfg->max_conns > 4096))
        s = hinge_fail(err, errlen, HINGE_ERR_INVALID, "queue over 1 GiB or more than 4096 connections");
    if (s == HINGE_OK && !(l = calloc(1, sizeof *l)))
        s = hinge_fail(err, errlen, HINGE_ERR_NOMEM, "out of memory");
    if (s != HINGE_OK)
        return s;
    l->lfd = l->epfd = l->stopfd = l->tfd = -1;
    set_defaults(l, cfg);
    s = parse_addr(cfg->upstream, &l->upstream, err, errlen);
    if (s == HINGE_OK && !(l->conns = calloc(l->max_conns, sizeof *l->conns)))
        s = hinge_fail(err, errlen, HINGE_ERR_NOMEM, "out of memory");
    if (s == HINGE_OK)
        s = open_listener(l, &la, err, errlen);
    if (s != HINGE_OK) {
        part_linkemu_destroy(l);
        return s;
    }
    *out = l;
    return HINGE_OK;
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static void conn_close(part_linkemu *l, conn *c)
{
    (void)l;
    for (int s = 0; s < 2; s++) {
        close_fd(&c->fd[s]); /* closing removes it from the epoll set */
        free(c->d[s].q);
    }
    *c = (conn){0};
}

void part_linkemu_destroy(part_linkemu *l)
{
    if (!l)
        return;
    for (uint32_t i = 0; l->conns && i < l->max_conns; i++)
        if (l->conns[i].used)
            conn_close(l, &l->conns[i]);
    free(l->conns);
    close_fd(&l->lfd);
    close_fd(&l->epfd);
    close_fd(&l->stopfd);
    close_fd(&l->tfd);
    free(l);
}

uint16_t part_linkemu_port(const part_linkemu *l)
{
    return l->port;
}

void part_linkemu_stop(part_linkemu *l)
{
    atomic_store(&l->stop_asked, true);
    uint64_t one = 1;
    ssize_t n = write(l->stopfd, &one, sizeof one);
    (void)n;
}

void part_linkemu_cut(part_linkemu *l)
{
    atomic_store(&l->cut_asked, true);
    uint64_t one = 1;
    ssize_t n = write(l->stopfd, &one, sizeof one);
    (void)n;
}

void part_linkemu_get_stats(const part_linkemu *l, part_linkemu_stats *out)
{
    *out = l->st;
}

const char *part_linkemu_errmsg(const part_linkemu *l)
{
    return l ? l->errmsg : "no emulator";
}

/* When a chunk of bytes arriving at now leaves the bucket (FIFO: never
 * before the previous departure). */
static uint64_t bucket_take(bucket *b, const part_link_dir *d, double bytes, uint64_t now)
{
    if (d->rate_bps <= 0)
        return now;
    uint64_t start = now > b->t_ns ? now : b->t_ns;
    double rate = d->rate_bps / 8.0; /* bytes per second */
    double tok = fmin(d->burst_bytes, b->tokens + rate * (double)(start - b->t_ns) * 1e-9);
    if (tok >= bytes) {
        b->tokens = tok - bytes;
        b->t_ns = start;
        return start;
    }
    uint64_t depart = start + (uint64_t)ceil((bytes - tok) / rate * 1e9);
    b->tokens = 0;
    b->t_ns = depart;
    return depart;
}

/* Departure, delay, jitter and loss of a chunk just read on side s. */
static void stamp(part_linkemu *l, dir *d, int s, chunk *ch)
{
    const part_link_dir *ld = &l->link[s];
    uint64_t now = now_ns();
    uint64_t depart = bucket_take(&l->bk[s], ld, (double)ch->len + LINKEMU_SEG_HEADER, now);
    if (ld->jitter_s > 0 && (d->last_read_ns == 0 || now - d->last_read_ns > BURST_GAP_NS))
        d->jitter_s = (2.0 * rand_unit(&l->rng) - 1.0) * ld->jitter_s;
    d->last_read_ns = now;
    double delay = fmax(0.0, ld->delay_s + d->jitter_s);
    if (ld->loss > 0 && rand_unit(&l->rng) < ld->loss) {
        delay += ld->loss_penalty_s;
        if (s == 0)
            l->st.lost_up++;
        else
            l->st.lost_down++;
    }
    uint64_t rel = depart + (uint64_t)(delay * 1e9);
    if (rel < d->last_release_ns)
        rel = d->last_release_ns;
    ch->release_ns = d->last_release_ns = rel;
    if (s == 0) {
        l->st.bytes_up += ch->len;
        l->st.chunks_up++;
    } else {
        l->st.bytes_down += ch->len;
        l->st.chunks_down++;
    }
}

/* Reads side s into its direction's queue until EAGAIN, EOF or a full
 * queue. Returns -1 on a socket error (the connection is to be closed). */
static int pump_in(part_linkemu *l, conn *c, int s)
{
    dir *d = &c->d[s];
    while (!d->eof && d->len < l->cap) {
        chunk *ch = &d->q[(d->head + d->len) % l->cap];
        ssize_t n = read(c->fd[s], ch->data, sizeof ch->data);
        if (n > 0) {
            ch->len = (uint16_t)n;
            ch->off = 0;
            stamp(l, d, s, ch);
            d->len++;
        } else if (n == 0) {
            d->eof = true;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            break;
        } else if (errno != EINTR) {
            return -1;
        }
    }
    return 0;
}

/* Writes the due chunks of direction s to its destination. Returns -1 on
 * a socket error. */
static int flush(part_linkemu *l, conn *c, int s, uint64_t now)
{
    dir *d = &c->d[s];
    int dst = c->fd[1 - s];
    while (d->len && !d->blocked && !d->shut && d->q[d->head].release_ns <= now) {
        chunk *ch = &d->q[d->head];
        ssize_t n = send(dst, ch->data + ch->off, (size_t)(ch->len - ch->off), MSG_NOSIGNAL);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            d->blocked = true;
        } else if (n < 0 && errno != EINTR) {
            return -1;
        } else if (n > 0) {
            ch->off = (uint16_t)(ch->off + n);
            if (ch->off == ch->len) {
                d->head = (d->head + 1) % l->cap;
                d->len--;
            }
        }
    }
    if (d->eof && d->len == 0 && !d->shut) {
        shutdown(dst, SHUT_WR);
        d->shut = true;
    }
    return 0;
}

/* Registers what each socket of c waits for; false when c is finished. */
static bool update_interest(part_linkemu *l, conn *c, size_t slot)
{
    for (int s = 0; s < 2; s++) {
        if (c->gone[s])
            continue;
        uint32_t want = 0;
        if (!c->d[s].eof && c->d[s].len < l->cap)
            want |= EPOLLIN | EPOLLRDHUP;
        if (c->d[1 - s].blocked)
            want |= EPOLLOUT;
        if (want != c->ev[s]) {
            struct epoll_event ev = {.events = want, .data.u64 = TAG_CONN0 + 2 * slot + (uint64_t)s};
            epoll_ctl(l->epfd, EPOLL_CTL_MOD, c->fd[s], &ev);
            c->ev[s] = want;
        }
    }
    return !(c->d[0].shut && c->d[1].shut);
}

static int set_nodelay(int fd)
{
    int one = 1;
    return setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* A connection to the upstream for a new client fd (blocking connect: the
 * upstream is local), both sockets non-blocking with TCP_NODELAY. */
static int open_conn(part_linkemu *l, conn *c, int cfd, size_t slot)
{
    *c = (conn){.used = true, .fd = {cfd, -1}};
    c->fd[1] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    c->d[0].q = malloc(l->cap * sizeof(chunk));
    c->d[1].q = malloc(l->cap * sizeof(chunk));
    if (c->fd[1] < 0 || !c->d[0].q || !c->d[1].q ||
        connect(c->fd[1], (const struct sockaddr *)&l->upstream, sizeof l->upstream) != 0)
        return -1;
    int fl = fcntl(c->fd[1], F_GETFL);
    if (fl < 0 || fcntl(c->fd[1], F_SETFL, fl | O_NONBLOCK) != 0 || set_nodelay(cfd) != 0 ||
        set_nodelay(c->fd[1]) != 0)
        return -1;
    for (int s = 0; s < 2; s++) {
        c->ev[s] = EPOLLIN | EPOLLRDHUP;
        if (epoll_add(l->epfd, c->fd[s], c->ev[s], TAG_CONN0 + 2 * slot + (uint64_t)s) != 0)
            return -1;
    }
    return 0;
}

static void accept_some(part_linkemu *l)
{
    for (int i = 0; i < ACCEPT_BURST; i++) {
        int cfd = accept4(l->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0)
            return;
        size_t slot = 0;
        while (slot < l->max_conns && l->conns[slot].used)
            slot++;
        if (slot == l->max_conns) {
            close(cfd);
            l->st.refused++;
            continue;
        }
        if (open_conn(l, &l->conns[slot], cfd, slot) != 0) {
            snprintf(l->errmsg, sizeof l->errmsg, "upstream connect: %s", strerror(errno));
            conn_close(l, &l->conns[slot]);
            l->st.refused++;
            continue;
        }
        l->st.conns++;
    }
}

/* An event on side s of the connection in slot. */
static void on_conn_event(part_linkemu *l, size_t slot, int s, uint32_t events)
{
    conn *c = &l->conns[slot];
    if (!c->used)
        return;
    if (events & EPOLLERR) {
        conn_close(l, c);
        l->st.resets++;
        return;
    }
    if (events & EPOLLOUT)
        c->d[1 - s].blocked = false;
    if ((events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)) && pump_in(l, c, s) != 0) {
        conn_close(l, c);
        l->st.resets++;
        return;
    }
    if (events & EPOLLHUP) { /* nothing more to read or write on this socket */
        c->d[s].eof = true;
        c->d[1 - s].shut = true;
        c->d[1 - s].len = 0;
        c->gone[s] = true;
        epoll_ctl(l->epfd, EPOLL_CTL_DEL, c->fd[s], NULL);
    }
}

/* Flushes every connection, closes finished ones; arms the timer for the
 * earliest pending release. */
static void service(part_linkemu *l)
{
    uint64_t now = now_ns(), next = UINT64_MAX;
    for (size_t i = 0; i < l->max_conns; i++) {
        conn *c = &l->conns[i];
        if (!c->used)
            continue;
        bool err = flush(l, c, 0, now) != 0 || flush(l, c, 1, now) != 0;
        if (err || !update_interest(l, c, i)) {
            conn_close(l, c);
            l->st.resets += err;
            continue;
        }
        for (int s = 0; s < 2; s++) {
            const dir *d = &c->d[s];
            if (d->len && !d->blocked && !d->shut && d->q[d->head].release_ns < next)
                next = d->q[d->head].release_ns;
        }
    }
    struct itimerspec its = {0};
    if (next != UINT64_MAX) {
        its.it_value.tv_sec = (time_t)(next / 1000000000u);
        its.it_value.tv_nsec = (long)(next % 1000000000u);
        if (next == 0)
            its.it_value.tv_nsec = 1;
    }
    timerfd_settime(l->tfd, TFD_TIMER_ABSTIME, &its, NULL);
}

static void on_event(part_linkemu *l, const struct epoll_event *ev)
{
    uint64_t tag = ev->data.u64, junk;
    ssize_t n;
    switch (tag) {
    case TAG_LISTEN: accept_some(l); break;
    case TAG_STOP:
        n = read(l->stopfd, &junk, sizeof junk);
        (void)n;
        if (atomic_exchange(&l->cut_asked, false)) /* a handover: every connection cut, the listener stays */
            for (uint32_t i = 0; i < l->max_conns; i++)
                if (l->conns[i].used) {
                    conn_close(l, &l->conns[i]);
                    l->st.resets++;
                }
        l->stop = atomic_load(&l->stop_asked);
        break;
    case TAG_TIMER: n = read(l->tfd, &junk, sizeof junk); (void)n; break;
    default:
        if (tag >= TAG_CONN0 && (tag - TAG_CONN0) / 2 < l->max_conns)
            on_conn_event(l, (size_t)(tag - TAG_CONN0) / 2, (int)((tag - TAG_CONN0) % 2), ev->events);
    }
}

hinge_status part_linkemu_run(part_linkemu *l)
{
    struct epoll_event evs[MAX_EVENTS];
    l->stop = atomic_load(&l->stop_asked);
    uint64_t change_ns = l->then_after_s > 0 ? now_ns() + (uint64_t)(l->then_after_s * 1e9) : 0;
    while (!l->stop) {
        int wait_ms = -1;
        if (change_ns) {
            uint64_t t = now_ns();
            if (t >= change_ns) { /* the channel changes; chunks already scheduled keep their times */
                set_links(l, &l->then[0], &l->then[1]);
                change_ns = 0;
            } else
                wait_ms = (int)((change_ns - t) / 1000000u) + 1;
        }
        int n = epoll_wait(l->epfd, evs, MAX_EVENTS, wait_ms);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return hinge_fail(l->errmsg, sizeof l->errmsg, HINGE_ERR_NETWORK, "epoll_wait: %s", strerror(errno));
        for (int i = 0; i < n; i++)
            on_event(l, &evs[i]);
        service(l);
    }
    uint64_t junk;
    ssize_t r = read(l->stopfd, &junk, sizeof junk);
    (void)r;
    return HINGE_OK;
}
