// Test CGI program: behaviour chosen by PATH_INFO.
//   /env        all environment variables       /body      stdin back
//   /status     Status: 418                     /redirect  Location only
//   /malformed  output that is no CGI response  /exit3     valid response, then exit(3)
//   /trap /loop /membomb                        hostile behaviour, stopped by the sandbox
//   /data-write?TEXT  writes /data/note.txt     /data-read reads it back
//   /escape[?PATH]  tries to open files outside /data (and PATH) and reports each attempt
//   /sleep      answers after one second (for graceful-shutdown tests)
//   /stderr/N   N MiB to stderr, then a response      /huge/N   an N-MiB response body
//   /stackoverflow  unbounded recursion            /forge     stderr that tries to pass for log lines
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

char *volatile sink;

extern char **environ;

static int recurse(volatile int depth) {
    volatile char frame[256];
    frame[0] = (char)depth;
    return recurse(depth + 1) + frame[0];
}

static const char *info(void) {
    const char *p = getenv("PATH_INFO");
    return p ? p : "";
}

static void header(void) { printf("Content-Type: text/plain\r\n\r\n"); }

static void try_open(const char *path) {
    FILE *f = fopen(path, "r");
    if (f) {
        char line[128] = {0};
        if (!fgets(line, sizeof line, f)) line[0] = 0;
        printf("OPENED %s: %s\n", path, line);
        fclose(f);
    } else {
        printf("denied %s (%s)\n", path, strerror(errno));
    }
}

int main(void) {
    const char *p = info();
    if (!strcmp(p, "/env")) {
        header();
        for (char **e = environ; *e; e++) printf("%s\n", *e);
    } else if (!strcmp(p, "/body")) {
        header();
        char buf[4096];
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, stdin)) > 0) fwrite(buf, 1, n, stdout);
    } else if (!strcmp(p, "/status")) {
        printf("Status: 418 I'm a teapot\r\nContent-Type: text/plain\r\nX-Probe: status\r\n\r\nshort and stout\n");
    } else if (!strcmp(p, "/redirect")) {
        printf("Location: /elsewhere\r\n\r\n");
    } else if (!strcmp(p, "/malformed")) {
        printf("this is not a CGI response\n");
    } else if (!strcmp(p, "/exit3")) {
        header();
        printf("partial success\n");
        fflush(stdout);
        exit(3);
    } else if (!strcmp(p, "/sleep")) {
        sleep(1);
        header();
        printf("slept\n");
    } else if (!strcmp(p, "/forge")) {
        /* A line break and a terminal escape, to pass for a line of the server's own log. */
        fputs("first\n2026-01-01T00:00:00Z  WARN palisade: forged tenant=other\r\x1b[2K\n", stderr);
        header();
        printf("forged\n");
    } else if (!strncmp(p, "/stderr/", 8)) {
        /* 1 KiB lines, written 64 KiB at a time: few host calls, so the test does not depend on how fast
           they are (cpu_time counts them). */
        static char block[64 << 10];
        memset(block, 'e', sizeof block);
        for (size_t i = 1023; i < sizeof block; i += 1024) block[i] = '\n';
        for (long i = 0; i < atol(p + 8) * 16; i++) fwrite(block, 1, sizeof block, stderr);
        header();
        printf("wrote stderr\n");
    } else if (!strncmp(p, "/huge/", 6)) {
        static char block[1 << 16];
        memset(block, 'x', sizeof block);
        header();
        for (long i = 0; i < atol(p + 6) * 16; i++) fwrite(block, 1, sizeof block, stdout);
    } else if (!strcmp(p, "/stackoverflow")) {
        sink = (char *)(long)recurse(0);
    } else if (!strcmp(p, "/trap")) {
        __builtin_trap();
    } else if (!strcmp(p, "/loop")) {
        for (volatile unsigned long i = 0;; i++) {
        }
    } else if (!strcmp(p, "/membomb")) {
        for (;;) {
            char *m = malloc(1 << 20);
            if (!m) __builtin_trap();
            memset(m, 1, 1 << 20);
            sink = m;  // observable, so the compiler cannot elide the allocation
        }
    } else if (!strcmp(p, "/data-write")) {
        FILE *f = fopen("/data/note.txt", "w");
        header();
        if (!f) {
            printf("cannot write: %s\n", strerror(errno));
            return 0;
        }
        fputs(getenv("QUERY_STRING"), f);
        fclose(f);
        printf("written\n");
    } else if (!strcmp(p, "/data-read")) {
        header();
        try_open("/data/note.txt");
    } else if (!strcmp(p, "/escape")) {
        header();
        try_open("/etc/passwd");
        try_open("/data/../etc/passwd");
        try_open("../etc/passwd");
        try_open("/data/link-out/passwd");
        try_open("/data/../neighbour/secret.txt");
        const char *q = getenv("QUERY_STRING");
        if (q && *q) try_open(q);  // e.g. the neighbour's data directory, by its path on the host
    } else {
        header();
        printf("probe ok\n");
    }
    return 0;
}
