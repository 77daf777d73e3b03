/* hinge-linkemu: a userspace link emulator for experiments (this kernel has
 * tbf and htb but no netem).
 *
 * Listens on a local address and forwards each accepted TCP connection to
 * an upstream address (hinge-edge). Each direction of the link has
 *   - a token bucket shared by all connections (the link's bandwidth):
 *     every chunk read from a socket (at most one TCP segment of payload,
 *     1448 bytes) is charged its length plus 52 bytes of IP/TCP headers;
 *   - a delay line per connection: a chunk leaves after its departure
 *     from the bucket plus the one-way delay plus jitter, uniform in
 *     [-jitter, +jitter], drawn once per burst (chunks read less than 1 ms
 *     apart: back-to-back packets see the same queueing delay), clipped so
 *     that delays stay >= 0 and chunks keep their order (TCP delivers in
 *     order: a late chunk holds back the ones behind it);
 *   - loss, emulated as what TCP turns it into: a lost segment arrives
 *     late by the recovery time, max(2 RTT, 10 ms) by default (the tail
 *     loss probe's timeout), holding back what follows.
 * Not emulated: TCP's own slow start and congestion control on the
 * emulated path (the hops to and from the emulator are loopback).
 *
 * One thread, epoll; every buffer is bounded (queue_bytes per direction
 * of each connection; a full queue stops reading from that socket, so
 * TCP flow control pushes back on the sender). */
#ifndef HINGE_PART_LINKEMU_H
#define HINGE_PART_LINKEMU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

enum {
    LINKEMU_SEG_PAYLOAD = 1448, /* bytes per chunk, as PART_SEG_PAYLOAD */
    LINKEMU_SEG_HEADER = 52,    /* IP + TCP header bytes charged per chunk */
};

typedef struct part_link_dir {
    double rate_bps;       /* link bit rate (headers included); 0: unlimited */
    double burst_bytes;    /* bucket depth; 0: two segments */
    double delay_s;        /* one-way delay */
    double jitter_s;       /* +- this, uniform */
    double loss;           /* per-chunk probability in [0, 1) */
    double loss_penalty_s; /* extra delay of a lost chunk; 0: max(2 RTT, 10 ms) */
} part_link_dir;

typedef struct part_linkemu_config {
    const char *listen;   /* "127.0.0.1:PORT", numeric IPv4; port 0 picks a free one */
    const char *upstream; /* "127.0.0.1:PORT" */
    part_link_dir up;     /* client -> upstream */
    part_link_dir down;   /* upstream -> client */
    size_t queue_bytes;   /* per direction and connection; 0: 2 MiB */
    uint32_t max_conns;   /* 0: 64; more are refused (closed at once) */
    uint64_t seed;        /* jitter and loss draws */
    double then_after_s;  /* > 0: this long after run starts, the links become then_up and then_down
                             (a channel that changes mid-run) */
    part_link_dir then_up, then_down;
} part_linkemu_config;

typedef struct part_linkemu_stats {
    uint64_t conns;             /* accepted */
    uint64_t bytes_up, bytes_down; /* payload forwarded */
    uint64_t chunks_up, chunks_down;
    uint64_t lost_up, lost_down; /* chunks delayed as lost */
    uint64_t refused;           /* clients closed at once: no free slot or the upstream refused */
    uint64_t resets;            /* connections closed on a socket error */
} part_linkemu_stats;

typedef struct part_linkemu part_linkemu;

/* Binds the listening socket. Errors: HINGE_ERR_INVALID (address or link
 * parameters), HINGE_ERR_NETWORK (socket, bind), HINGE_ERR_NOMEM. */
hinge_status part_linkemu_create(const part_linkemu_config *cfg, part_linkemu **out, char *err, size_t errlen);
/* Closes every connection and socket; NULL is a no-op. Not while running. */
void part_linkemu_destroy(part_linkemu *l);
/* The port it listens on. */
uint16_t part_linkemu_port(const part_linkemu *l);
/* Runs the loop until part_linkemu_stop. HINGE_ERR_NETWORK on an epoll
 * failure; a connection's error closes that connection only. */
hinge_status part_linkemu_run(part_linkemu *l);
/* Makes run return soon. Any thread; async-signal-safe. */
void part_linkemu_stop(part_linkemu *l);
/* Cuts every connection at once (a handover, a NAT rebinding), keeping the
 * listener: clients must reconnect. Any thread; async-signal-safe. */
void part_linkemu_cut(part_linkemu *l);
/* Counters; call from the running thread or after run returned. */
void part_linkemu_get_stats(const part_linkemu *l, part_linkemu_stats *out);
const char *part_linkemu_errmsg(const part_linkemu *l);

#endif
