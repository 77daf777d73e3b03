/* partition internal: what cost.c and decide.c share. */
#ifndef HINGE_PART_IMPL_H
#define HINGE_PART_IMPL_H

#include "partition.h"

/* Per-request framing on top of the activation frame and the reply body,
 * bytes on the link (docs/partitioning.md, "Bytes on the link"). */
enum {
    PART_SEG_PAYLOAD = 1448,  /* TCP payload per segment (MSS with timestamps) */
    PART_SEG_HEADER = 52,     /* IPv4 20 + TCP 20 + timestamps 12 */
    PART_TLS_RECORD = 16384,  /* TLS record / HTTP/2 DATA frame payload */
    PART_TLS_RECORD_OVH = 31, /* TLS 1.3 record (5 + 16 tag + 1 type) + HTTP/2 frame header 9 */
    PART_HTTP_REQ_BYTES = 60, /* HEADERS of a step request after HPACK warm-up */
    PART_HTTP_RESP_BYTES = 90, /* HEADERS + DATA of a step reply, body included */
    PART_HTTP_RESP_ROWS_BYTES = 40, /* HEADERS of a private head's reply (its frame body apart) */
    PART_REPLY_BODY_BYTES = 52, /* the body {"token","pos","edge_us","queue_us"}, typically */
    PART_SETUP_UP_BYTES = 900,    /* ClientHello, Finished, preface, SETTINGS, session POST */
    PART_SETUP_DOWN_BYTES = 2200, /* ServerHello, certificate, Finished, SETTINGS, session reply */
    PART_SETUP_RTTS = 3,          /* TCP handshake, TLS 1.3 handshake, session POST */
};

/* Loss recovery costs max(2 RTT, this) per lost segment (Linux's tail loss
 * probe timeout); hinge-linkemu uses the same rule. */
#define PART_LOSS_PENALTY_MIN_S 0.010

/* True when the measured block of c is of model m. */
bool part_measured_fits(const part_compute *c, const part_model *m);

/* Bytes on the link for a message of payload bytes (TLS records, HTTP/2
 * frames, TCP/IP headers). */
double part_wire_bytes(double payload);

/* Expected loss-recovery delay of a message of wire bytes. */
double part_loss_delay_s(const part_channel *ch, double wire);

#endif
