// A tiny webmail CGI program in the style of the 1990s, with two deliberate, classic memory bugs.
// It is the same C file under palisade and natively; see README.md beside it.
//
//   GET ?action=list[&name=DISPLAY]        every message in the user's mailbox, one per line
//   GET ?action=show&n=K[&len=L]           message K (1-based); L bytes of it (default: its length)
//
// The user is MAIL_USER (set by whoever runs the program: a tenant's env, or the web server), and the
// mailbox is MAIL_ROOT/USER.mbox, one message per line (MAIL_ROOT defaults to /data).
//
// BUG 1 (stack/struct overflow): the display name from the query string is strcpy'd into a 16-byte field
//   that sits right before the mailbox path, so a long name overwrites the path.
// BUG 2 (Heartbleed-style over-read): a message is copied into a static buffer that is never cleared, and
//   `len` is trusted, so a short message is echoed with whatever an earlier request left behind it.
//
// Run with `--worker`, the program is a long-lived worker (like FastCGI) that reads one request per line
// from stdin, "USER QUERY", and answers each on stdout: this is where bug 2 leaks between users.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_MESSAGE 512

struct view {
    char name[16];      // the display name: BUG 1 writes past it...
    char mailbox[64];   // ...into the path of the mailbox to open
};

static char message[MAX_MESSAGE];  // BUG 2: reused across requests in a long-lived process, never cleared

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// The value of `key` in a query string, percent-decoded into `out` (at most `cap` bytes).
static int query_param(const char *query, const char *key, char *out, size_t cap) {
    size_t klen = strlen(key);
    for (const char *p = query; p && *p; p = strchr(p, '&') ? strchr(p, '&') + 1 : NULL) {
        if (strncmp(p, key, klen) || p[klen] != '=') continue;
        size_t n = 0;
        for (const char *v = p + klen + 1; *v && *v != '&' && n + 1 < cap; v++) {
            if (*v == '%' && hexval(v[1]) >= 0 && hexval(v[2]) >= 0) {
                out[n++] = (char)(hexval(v[1]) * 16 + hexval(v[2]));
                v += 2;
            } else {
                out[n++] = *v == '+' ? ' ' : *v;
            }
        }
        out[n] = 0;
        return 1;
    }
    return 0;
}

static void handle(const char *user, const char *query) {
    struct view v;
    char name[256] = "";
    char action[16] = "list";
    char arg[16];

    snprintf(v.mailbox, sizeof v.mailbox, "%s/%s.mbox", getenv("MAIL_ROOT") ? getenv("MAIL_ROOT") : "/data", user);
    query_param(query, "name", name, sizeof name);
    strcpy(v.name, name[0] ? name : user);  // BUG 1: no bounds check
    query_param(query, "action", action, sizeof action);

    FILE *f = fopen(v.mailbox, "r");
    if (!f) {
        printf("Status: 404 Not Found\r\nContent-Type: text/plain\r\n\r\nno mailbox for %s\n", user);
        return;
    }
    printf("Content-Type: text/plain; charset=utf-8\r\n\r\n");
    printf("Mail for %s\n", v.name);
    char line[MAX_MESSAGE];
    int k = 0, want = query_param(query, "n", arg, sizeof arg) ? atoi(arg) : 0;
    while (fgets(line, sizeof line, f)) {
        k++;
        if (!strcmp(action, "list")) {
            printf("%d: %s", k, line);
        } else if (!strcmp(action, "show") && k == want) {
            size_t len = strlen(line);
            memcpy(message, line, len);  // the rest of `message` still holds the previous request's message
            if (query_param(query, "len", arg, sizeof arg)) len = (size_t)atoi(arg);
            if (len > sizeof message) len = sizeof message;
            fwrite(message, 1, len, stdout);  // BUG 2: `len` is the client's, not the message's
        }
    }
    fclose(f);
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--worker")) {
        char request[1024];
        while (fgets(request, sizeof request, stdin)) {
            request[strcspn(request, "\n")] = 0;
            char *query = strchr(request, ' ');
            if (!query) continue;
            *query++ = 0;
            handle(request, query);
            printf("\n--- end of response ---\n");
            fflush(stdout);
        }
        return 0;
    }
    const char *user = getenv("MAIL_USER");
    const char *query = getenv("QUERY_STRING");
    if (!user) {
        printf("Status: 500 Internal Server Error\r\nContent-Type: text/plain\r\n\r\nMAIL_USER is not set\n");
        return 0;
    }
    handle(user, query ? query : "");
    return 0;
}
