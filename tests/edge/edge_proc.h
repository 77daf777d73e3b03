/* tests/edge: starting and stopping a real hinge-edge process, and raw
 * HTTP/2 requests to it (libcurl), for the integration tests. Everything
 * touches 127.0.0.1 only; every wait is bounded. */
#ifndef HINGE_TEST_EDGE_PROC_H
#define HINGE_TEST_EDGE_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct edge_proc {
    pid_t pid;
    int port;
    char url[64];      /* https://127.0.0.1:PORT or http://... */
    char dir[256];     /* temp dir: cert.pem, key.pem, edge.log */
    char cacert[300];  /* dir/cert.pem, or "" for h2c */
    const char *token; /* edge_req sends "Authorization: Bearer TOKEN" when set */
    const char *source; /* edge_req connects from this loopback address (e.g. "127.0.0.2"); NULL: any */
    int nofile;        /* > 0: the edge runs with RLIMIT_NOFILE at this */
    const char *client_cert, *client_key; /* edge_req presents this certificate (mutual TLS) when set */
} edge_proc;

/* CLOCK_MONOTONIC in seconds. */
double edge_now_s(void);

/* Makes a temp dir with a self-signed certificate for 127.0.0.1 (openssl
 * CLI). Returns 0 on success. */
int edge_proc_cert(edge_proc *p);

/* Starts `edge_bin --model model --listen 127.0.0.1:0 [TLS or --insecure-h2c]
 * extra...` (extra: NULL-terminated), waits (<= 20 s) for "listening on". */
int edge_proc_start(edge_proc *p, const char *edge_bin, const char *model, bool tls, const char *const *extra);

/* SIGTERM, then waits (<= 15 s); returns the exit status (-1: killed/timeout). */
int edge_proc_stop(edge_proc *p);

/* Removes the temp dir. */
void edge_proc_cleanup(edge_proc *p);

/* One request on a fresh connection. Returns the HTTP status (0 on a
 * transport failure); the body goes to resp (NUL-terminated, cut at cap).
 * With stall_after > 0 the body stops after that many bytes (the upload is
 * paused, never resumed) and the call waits for the edge's answer. */
long edge_req(const edge_proc *p, const char *method, const char *path, const void *body, size_t len,
              size_t stall_after, char *resp, size_t cap);

/* The response headers of this thread's last edge_req ("" when none). */
const char *edge_req_headers(void);

/* True when resp is {"error": "...", "detail": "..."} with error == code
 * (code NULL: any). */
bool edge_is_error(const char *resp, const char *code);

/* The process's resident memory in KiB (-1: unknown). */
long edge_proc_rss_kib(pid_t pid);
/* CPU seconds (user + system) the process has used (-1: unknown). */
double edge_proc_cpu_s(pid_t pid);
/* Size of p->dir/name in bytes (-1: none). */
long edge_proc_file_size(const edge_proc *p, const char *name);
/* True when the edge's log (p->dir/edge.log) holds text. */
bool edge_proc_log_has(const edge_proc *p, const char *text);

/* A TCP connection to 127.0.0.1:port from source (a loopback address, NULL:
 * any); -1 on failure. */
int edge_raw_connect(int port, const char *source);
/* Reads and drops what fd gets until the peer closes it: true when it did
 * within ms. */
bool edge_closed_within(int fd, int ms);

#endif
