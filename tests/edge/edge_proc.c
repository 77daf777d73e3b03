/* See edge_proc.h. */
#include "edge_proc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

double edge_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int edge_proc_cert(edge_proc *p)
{
    snprintf(p->dir, sizeof p->dir, "/tmp/hinge-edge-test-XXXXXX");
    if (!mkdtemp(p->dir))
        return -1;
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 "
             "-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 -keyout %s/key.pem -out %s/cert.pem "
             ">/dev/null 2>&1",
             p->dir, p->dir);
    snprintf(p->cacert, sizeof p->cacert, "%s/cert.pem", p->dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void child(const edge_proc *p, int out_fd, const char *bin, const char *model, bool tls,
                  const char *const *extra)
{
    char log[300], cert[300], key[300];
    snprintf(log, sizeof log, "%s/edge.log", p->dir);
    snprintf(cert, sizeof cert, "%s/cert.pem", p->dir);
    snprintf(key, sizeof key, "%s/key.pem", p->dir);
    const char *argv[48] = {bin, "--model", model, "--listen", "127.0.0.1:0", "--log-level", "debug"};
    int n = 7;
    if (tls) {
        argv[n++] = "--cert";
        argv[n++] = cert;
        argv[n++] = "--key";
        argv[n++] = key;
    } else {
        argv[n++] = "--insecure-h2c";
    }
    for (int i = 0; extra && extra[i] && n < 46; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    int lfd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
    dup2(out_fd, 1);
    if (lfd >= 0)
        dup2(lfd, 2);
    if (p->nofile > 0) {
        struct rlimit rl = {(rlim_t)p->nofile, (rlim_t)p->nofile};
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            _exit(126);
    }
    execv(bin, (char *const *)argv);
    _exit(127);
}

int edge_proc_start(edge_proc *p, const char *bin, const char *model, bool tls, const char *const *extra)
{
    int fds[2];
    if (pipe(fds) != 0)
        return -1;
    p->pid = fork();
    if (p->pid == 0)
        child(p, fds[1], bin, model, tls, extra);
    close(fds[1]);
    char line[256] = "";
    size_t len = 0;
    double deadline = edge_now_s() + 20.0;
    while (len < sizeof line - 1 && !strchr(line, '\n') && edge_now_s() < deadline) {
        struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
        if (poll(&pfd, 1, 200) <= 0)
            continue;
        ssize_t n = read(fds[0], line + len, sizeof line - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
        line[len] = '\0';
    }
    close(fds[0]);
    char *end;
    const char *at = strstr(line, "listening on 127.0.0.1:");
    if (!at)
        return -1;
    p->port = (int)strtol(at + strlen("listening on 127.0.0.1:"), &end, 10);
    snprintf(p->url, sizeof p->url, "%s://127.0.0.1:%d", tls ? "https" : "http", p->port);
    if (!tls)
        p->cacert[0] = '\0';
    else
        snprintf(p->cacert, sizeof p->cacert, "%s/cert.pem", p->dir);
    return p->port > 0 ? 0 : -1;
}

int edge_proc_stop(edge_proc *p)
{
    if (p->pid <= 0)
        return -1;
    kill(p->pid, SIGTERM);
    double deadline = edge_now_s() + 15.0;
    int status = 0;
    while (edge_now_s() < deadline) {
        pid_t r = waitpid(p->pid, &status, WNOHANG);
        if (r == p->pid) {
            p->pid = 0;
            return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        }
        usleep(10000);
    }
    kill(p->pid, SIGKILL);
    waitpid(p->pid, &status, 0);
    p->pid = 0;
    return -1;
}

void edge_proc_cleanup(edge_proc *p)
{
    char cmd[400];
    if (p->dir[0] && strncmp(p->dir, "/tmp/hinge-edge-test-", 21) == 0) {
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", p->dir);
        if (system(cmd) != 0)
            fprintf(stderr, "cannot remove %s\n", p->dir);
    }
}

/* ---- raw requests ---- */

typedef struct sink {
    char *buf;
    size_t cap, len;
    bool stop_early; /* the upload is stalled: end the transfer once the answer is in */
} sink;

typedef struct source {
    const char *data;
    size_t len, off, stall_after;
} source;

static _Thread_local char last_headers[2048];

const char *edge_req_headers(void)
{
    return last_headers;
}

static size_t on_header(char *ptr, size_t size, size_t nmemb, void *user)
{
    (void)user;
    size_t n = size * nmemb, len = strlen(last_headers), room = sizeof last_headers - 1 - len;
    memcpy(last_headers + len, ptr, n < room ? n : room);
    last_headers[len + (n < room ? n : room)] = '\0';
    return n;
}

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *user)
{
    sink *s = user;
    size_t n = size * nmemb, room = s->cap - 1 - s->len;
    memcpy(s->buf + s->len, ptr, n < room ? n : room);
    s->len += n < room ? n : room;
    s->buf[s->len] = '\0';
    /* libcurl 7.88 does not finish a transfer whose upload is paused when the
     * server ends the stream: take the (small, one-frame) answer and stop. */
    return s->stop_early ? 0 : n;
}

static size_t on_read(char *buf, size_t size, size_t nitems, void *user)
{
    source *s = user;
    size_t limit = s->stall_after ? s->stall_after : s->len;
    if (s->off >= limit)
        return s->off < s->len ? CURL_READFUNC_PAUSE : 0;
    size_t n = size * nitems, left = limit - s->off;
    n = n < left ? n : left;
    memcpy(buf, s->data + s->off, n);
    s->off += n;
    return n;
}

long edge_req(const edge_proc *p, const char *method, const char *path, const void *body, size_t len,
              size_t stall_after, char *resp, size_t cap)
{
    char url[512];
    snprintf(url, sizeof url, "%s%s", p->url, path);
    sink out = {resp, cap, 0, stall_after > 0};
    resp[0] = '\0';
    source in = {body, len, 0, stall_after};
    CURL *e = curl_easy_init();
    struct curl_slist *h = curl_slist_append(NULL, "Expect:");
    char auth[300];
    if (p->token) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", p->token);
        h = curl_slist_append(h, auth);
    }
    last_headers[0] = '\0';
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    if (p->source)
        curl_easy_setopt(e, CURLOPT_INTERFACE, p->source);
    if (p->client_cert) {
        curl_easy_setopt(e, CURLOPT_SSLCERT, p->client_cert);
        curl_easy_setopt(e, CURLOPT_SSLKEY, p->client_key);
    }
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION,
                     (long)(p->cacert[0] ? CURL_HTTP_VERSION_2TLS : CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE));
    if (p->cacert[0])
        curl_easy_setopt(e, CURLOPT_CAINFO, p->cacert);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &out);
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    if (body) {
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(e, CURLOPT_READDATA, &in);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    long status = 0;
    CURLcode rc = curl_easy_perform(e);
    if (rc == CURLE_OK || out.len > 0)
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(e);
    return status;
}

bool edge_is_error(const char *resp, const char *code)
{
    json_error_t je;
    json_t *j = json_loads(resp, 0, &je);
    const char *err = NULL, *detail = NULL;
    bool ok = j && json_unpack(j, "{s:s, s:s}", "error", &err, "detail", &detail) == 0 && detail[0] &&
              (!code || strcmp(err, code) == 0);
    json_decref(j);
    return ok;
}

/* ---- the edge process and raw sockets ---- */

long edge_proc_rss_kib(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long kib = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0)
            kib = strtol(line + 6, NULL, 10);
    if (f)
        fclose(f);
    return kib;
}

/* CPU seconds the process has used. */
double edge_proc_cpu_s(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f)
        fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    unsigned long ut = 0, st = 0;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

long edge_proc_file_size(const edge_proc *p, const char *name)
{
    char path[300];
    struct stat sb;
    snprintf(path, sizeof path, "%s/%s", p->dir, name);
    return stat(path, &sb) == 0 ? (long)sb.st_size : -1;
}

bool edge_proc_log_has(const edge_proc *p, const char *text)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "grep -qF '%s' %s/edge.log", text, p->dir);
    return system(cmd) == 0;
}

/* A TCP connection to port from source (a loopback address); -1 on failure. */
int edge_raw_connect(int port, const char *source)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    if (fd < 0)
        return -1;
    if (source) {
        inet_pton(AF_INET, source, &a.sin_addr);
        if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0) {
            close(fd);
            return -1;
        }
    }
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Reads and drops what fd gets until the peer closes it: true when it did
 * within ms. */
bool edge_closed_within(int fd, int ms)
{
    double end = edge_now_s() + ms / 1e3;
    char buf[4096];
    while (edge_now_s() < end) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, 50) <= 0)
            continue;
        ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
            return true;
    }
    return false;
}
