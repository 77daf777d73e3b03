/* Log lines a peer can cause over and over (refused connections, failed
 * handshakes, accept errors, 401s): at most one a second per kind, so a
 * flood costs a line a second, not a disk. The next line that goes out
 * says how many were dropped. */
#include <stdarg.h>
#include <stdio.h>

#include "edge_impl.h"

enum { RATELOG_MS = 1000 };

void edge_log_limited(hinge_edge *e, edge_rl_kind k, hinge_log_level level, const char *fmt, ...)
{
    if (!e->log.fn || level > e->log.level)
        return;
    uint64_t now = edge_now_ms();
    if (e->rl.last_ms[k] && now - e->rl.last_ms[k] < RATELOG_MS) {
        e->rl.suppressed[k]++;
        return;
    }
    char line[HINGE_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (e->rl.suppressed[k])
        hinge_log(&e->log, level, "%s (and %llu more like it in the last second)", line,
                  (unsigned long long)e->rl.suppressed[k]);
    else
        hinge_log(&e->log, level, "%s", line);
    e->rl.last_ms[k] = now;
    e->rl.suppressed[k] = 0;
}
