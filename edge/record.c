/* --record-dir: a debug aid and the privacy test's evidence. Every request
 * the edge received is written as two files, NNNNNN.head ("METHOD PATH\n")
 * and NNNNNN.body (the body bytes exactly as received, possibly cut short
 * when the request was refused part-way); a step's reply as NNNNNN.reply
 * (JSON, or a private head's frame), so that both directions can be
 * checked. Failures are logged, never fatal. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "edge_impl.h"

static const char *method_name(edge_method m)
{
    switch (m) {
    case EDGE_M_GET: return "GET";
    case EDGE_M_POST: return "POST";
    case EDGE_M_DELETE: return "DELETE";
    default: return "OTHER";
    }
}

static bool write_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return false;
    const char *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            close(fd);
            return false;
        }
        p += n;
        len -= (size_t)n;
    }
    return close(fd) == 0;
}

uint64_t edge_record(hinge_edge *e, const edge_stream *st, const void *body, size_t len)
{
    char path[4200], head[EDGE_PATH_MAX + 16];
    unsigned long long seq = (unsigned long long)e->record_seq++;
    int hn = snprintf(head, sizeof head, "%s %s\n", method_name(st->method), st->path);
    snprintf(path, sizeof path, "%s/%06llu.head", e->record_dir, seq);
    bool ok = write_file(path, head, (size_t)hn);
    snprintf(path, sizeof path, "%s/%06llu.body", e->record_dir, seq);
    ok = ok && write_file(path, body, len);
    if (!ok)
        hinge_log(&e->log, HINGE_LOG_WARN, "cannot record request %llu in %s: %s", seq, e->record_dir,
                  strerror(errno));
    return seq;
}

void edge_record_reply(hinge_edge *e, uint64_t seq, const void *body, size_t len)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%06llu.reply", e->record_dir, (unsigned long long)seq);
    if (!write_file(path, body, len))
        hinge_log(&e->log, HINGE_LOG_WARN, "cannot record the reply to %llu in %s: %s", (unsigned long long)seq,
                  e->record_dir, strerror(errno));
}
