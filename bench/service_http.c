/* The backend, load client and reachability probe of bench/service.py, in one static binary.
 *
 *   service_http serve PORT...              keep-alive HTTP/1.1 server (epoll, one thread);
 *                                           "Connection: close" requests are answered and closed
 *   service_http load ADDR PORT CONNS SECONDS WARMUP keepalive|close [HOST]
 *                                           closed-loop load: CONNS connections each with one
 *                                           request in flight; prints one JSON line
 *   service_http probe ADDR PORT INTERVAL_US SECONDS
 *                                           connect every INTERVAL_US; prints "<monotonic s> up"
 *                                           or "... down" on every change of reachability
 *
 * C rather than Python so that on a 2-core machine the backend and the client cost little
 * per request and the path under test (kernel NAT, the ingress proxy) shows in the figures.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUF 8192
#define MAX_LATENCY_US 2000000

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void cpu_seconds(double *user, double *sys) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    *user = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6;
    *sys = ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static void die(const char *what) {
    perror(what);
    exit(1);
}

static void close_abortive(int fd) {
    /* RST instead of FIN: no TIME_WAIT, so a connection-per-request run never runs out of
     * ephemeral ports. */
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
}

/* -- server ------------------------------------------------------------------------------- */
struct sconn {
    int fd;
    int listener;
    int port;
    int len;
    char buf[BUF];
};

static int serve_request(struct sconn *c, const char *req, int req_len) {
    char body[256], out[512];
    int closing = memmem(req, req_len, "onnection: close", 16) != NULL;
    int body_len = snprintf(body, sizeof body, "hello from %d\n", c->port);
    int n = snprintf(out, sizeof out, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                     "Content-Length: %d\r\n%s\r\n%s",
                     body_len, closing ? "Connection: close\r\n" : "", body);
    if (send(c->fd, out, n, MSG_NOSIGNAL) != n) return -1;
    return closing ? -1 : 0;
}

static int serve(int argc, char **argv) {
    int ep = epoll_create1(0);
    if (ep < 0) die("epoll_create1");
    for (int i = 0; i < argc; i++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[i]))};
        if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0) die("bind");
        if (listen(fd, 4096) < 0) die("listen");
        struct sconn *l = calloc(1, sizeof *l);
        l->fd = fd, l->listener = 1, l->port = atoi(argv[i]);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = l};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    }
    fprintf(stderr, "serving\n");
    struct epoll_event events[256];
    for (;;) {
        int n = epoll_wait(ep, events, 256, -1);
        for (int i = 0; i < n; i++) {
            struct sconn *c = events[i].data.ptr;
            if (c->listener) {
                int fd;
                while ((fd = accept4(c->fd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    int one = 1;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct sconn *k = malloc(sizeof *k);
                    k->fd = fd, k->listener = 0, k->port = c->port, k->len = 0;
                    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = k};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
                }
                continue;
            }
            int r = recv(c->fd, c->buf + c->len, BUF - c->len, 0);
            if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
            int drop = r <= 0;
            if (!drop) c->len += r;
            char *end;
            while (!drop && (end = memmem(c->buf, c->len, "\r\n\r\n", 4)) != NULL) {
                int req_len = end + 4 - c->buf;
                drop = serve_request(c, c->buf, req_len) < 0;
                memmove(c->buf, c->buf + req_len, c->len - req_len);
                c->len -= req_len;
            }
            if (c->len == BUF) drop = 1;
            if (drop) {
                close(c->fd);
                free(c);
            }
        }
    }
    return 0;
}

/* -- load client -------------------------------------------------------------------------- */
enum { IDLE, CONNECTING, READING };

struct cconn {
    int fd;
    int state;
    int len;
    double started;
    char buf[BUF];
};

static struct sockaddr_in target;
static const char *request;
static int request_len, keepalive, ep;
static uint32_t *histogram;
static long completed, errors, over;
static double window_start, window_end;

static void fail(struct cconn *c) {
    if (c->fd >= 0) close_abortive(c->fd);
    c->fd = -1, c->state = IDLE, c->len = 0;
    if (now_s() >= window_start) errors++;
}

static void send_request(struct cconn *c) {
    if (send(c->fd, request, request_len, MSG_NOSIGNAL) != request_len) {
        fail(c);
        return;
    }
    c->state = READING;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void start(struct cconn *c) {
    c->started = now_s();
    c->len = 0;
    if (c->fd >= 0) {
        send_request(c);
        return;
    }
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int r = connect(c->fd, (struct sockaddr *)&target, sizeof target);
    if (r < 0 && errno != EINPROGRESS) {
        fail(c);
        return;
    }
    c->state = CONNECTING;
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
}

/* 1: a whole response is in the buffer, 0: not yet, -1: not one we can read. */
static int response_complete(struct cconn *c, int *closing) {
    char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
    if (end == NULL) return 0;
    int head = end + 4 - c->buf;
    if (c->len < 12 || memcmp(c->buf + 9, "200", 3) != 0) return -1;
    char *cl = memmem(c->buf, head, "ontent-Length:", 14);
    if (cl == NULL) cl = memmem(c->buf, head, "ontent-length:", 14);
    if (cl == NULL) return -1;
    *closing = memmem(c->buf, head, "onnection: close", 16) != NULL;
    return c->len >= head + atoi(cl + 14);
}

static void on_event(struct cconn *c) {
    if (c->state == CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            fail(c);
            return;
        }
        send_request(c);
        return;
    }
    int r = recv(c->fd, c->buf + c->len, BUF - c->len, 0);
    if (r < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (r <= 0) {
        fail(c);
        return;
    }
    c->len += r;
    int closing = 0, done = response_complete(c, &closing);
    if (done < 0 || (done == 0 && c->len == BUF)) {
        fail(c);
        return;
    }
    if (!done) return;
    double t = now_s();
    if (t >= window_start && t < window_end) {
        long us = (long)((t - c->started) * 1e6);
        if (us >= MAX_LATENCY_US) over++, us = MAX_LATENCY_US - 1;
        histogram[us]++;
        completed++;
    }
    if (!keepalive || closing) {
        close_abortive(c->fd);
        c->fd = -1;
    }
    c->state = IDLE;
}

static long quantile_us(double q) {
    long rank = (long)(q * (completed - 1)), seen = 0;
    for (long us = 0; us < MAX_LATENCY_US; us++) {
        seen += histogram[us];
        if (seen > rank) return us;
    }
    return MAX_LATENCY_US;
}

static int load(int argc, char **argv) {
    if (argc < 6) return 2;
    target.sin_family = AF_INET;
    target.sin_port = htons(atoi(argv[1]));
    if (inet_pton(AF_INET, argv[0], &target.sin_addr) != 1) die("address");
    int conns = atoi(argv[2]);
    double seconds = atof(argv[3]), warmup = atof(argv[4]);
    keepalive = strcmp(argv[5], "keepalive") == 0;
    static char req[512];
    request_len = snprintf(req, sizeof req, "GET / HTTP/1.1\r\nHost: %s\r\nUser-Agent: "
                           "sampan-bench\r\n%s\r\n", argc > 6 ? argv[6] : argv[0],
                           keepalive ? "" : "Connection: close\r\n");
    request = req;
    histogram = calloc(MAX_LATENCY_US, sizeof *histogram);
    ep = epoll_create1(0);
    struct cconn *cs = calloc(conns, sizeof *cs);
    double begin = now_s();
    window_start = begin + warmup, window_end = window_start + seconds;
    double cpu_user0 = 0, cpu_sys0 = 0;
    int cpu_marked = 0;
    for (int i = 0; i < conns; i++) cs[i].fd = -1, start(&cs[i]);
    struct epoll_event events[256];
    double last_scan = begin;
    for (;;) {
        double t = now_s();
        if (t >= window_start && !cpu_marked) cpu_seconds(&cpu_user0, &cpu_sys0), cpu_marked = 1;
        if (t >= window_end) break;
        int n = epoll_wait(ep, events, 256, 50);
        for (int i = 0; i < n; i++) on_event(events[i].data.ptr);
        t = now_s();
        for (int i = 0; i < conns; i++) {
            if (cs[i].state == IDLE && t < window_end) start(&cs[i]);
        }
        if (t - last_scan > 0.1) {  /* a request stuck for 2 s is an error */
            last_scan = t;
            for (int i = 0; i < conns; i++)
                if (cs[i].state != IDLE && t - cs[i].started > 2.0) fail(&cs[i]), start(&cs[i]);
        }
    }
    double user, sys;
    cpu_seconds(&user, &sys);
    printf("{\"requests\": %ld, \"errors\": %ld, \"seconds\": %.3f, \"rps\": %.1f, "
           "\"p50_us\": %ld, \"p90_us\": %ld, \"p99_us\": %ld, \"max_us\": %ld, "
           "\"over_2s\": %ld, \"client_cpu_user_s\": %.3f, \"client_cpu_sys_s\": %.3f, "
           "\"window_start\": %.6f, \"window_end\": %.6f}\n",
           completed, errors, seconds, completed / seconds, quantile_us(0.5), quantile_us(0.9),
           quantile_us(0.99), quantile_us(1.0), over, user - cpu_user0, sys - cpu_sys0,
           window_start, window_end);
    return 0;
}

/* -- probe -------------------------------------------------------------------------------- */
static int probe(int argc, char **argv) {
    if (argc < 4) return 2;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1]))};
    if (inet_pton(AF_INET, argv[0], &a.sin_addr) != 1) die("address");
    long interval_us = atol(argv[2]);
    double until = now_s() + atof(argv[3]);
    int state = -1;
    struct timeval timeout = {0, 200000};
    setvbuf(stdout, NULL, _IOLBF, 0);
    while (now_s() < until) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
        int up = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
        double t = now_s();
        close_abortive(fd);
        if (up != state) {
            printf("%.6f %s\n", t, up ? "up" : "down");
            state = up;
        }
        usleep(interval_us);
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 3 && strcmp(argv[1], "serve") == 0) return serve(argc - 2, argv + 2);
    if (argc >= 2 && strcmp(argv[1], "load") == 0) return load(argc - 2, argv + 2);
    if (argc >= 2 && strcmp(argv[1], "probe") == 0) return probe(argc - 2, argv + 2);
    fprintf(stderr, "usage: %s serve PORT... | load ADDR PORT CONNS SECONDS WARMUP "
                    "keepalive|close [HOST] | probe ADDR PORT INTERVAL_US SECONDS\n", argv[0]);
    return 2;
}
