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
//
// Built with -DMAIL_KV, the same code is a wasi:http component whose mailboxes live in the tenant's
// key-value bucket "mail" instead of files: the mailbox path is the key (so bug 1 now overwrites the key).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef MAIL_KV
#include "palisade_http.h"
#endif

#define MAX_MESSAGE 512

struct view {
    char name[16];      // the display name: BUG 1 writes past it...
    char mailbox[64];   // ...into the path of the mailbox to open
};

static char message[MAX_MESSAGE];  // BUG 2: reused across requests in a long-lived process, never cleared
static FILE *out;                  // where the CGI response goes: stdout, or memory in the component build

// The mailbox at `path`: a file, or (MAIL_KV) the value under key `path` in the tenant's "mail" bucket.
static FILE *open_mailbox(const char *path) {
#ifdef MAIL_KV
    proxy_string_t bucket_name = {(uint8_t *)"mail", 4}, key = {(uint8_t *)path, strlen(path)};
    wasi_keyvalue_store_own_bucket_t bucket;
    wasi_keyvalue_store_error_t err;
    proxy_option_list_u8_t value;
    if (!wasi_keyvalue_store_open(&bucket_name, &bucket, &err)) {
        wasi_keyvalue_store_error_free(&err);
        return NULL;
    }
    bool ok = wasi_keyvalue_store_method_bucket_get(wasi_keyvalue_store_borrow_bucket(bucket), &key, &value, &err);
    wasi_keyvalue_store_bucket_drop_own(bucket);
    if (!ok) {
        wasi_keyvalue_store_error_free(&err);
        return NULL;
    }
    if (!value.is_some) return NULL;
    return fmemopen(value.val.ptr, value.val.len, "r");  // the instance, and this buffer, end with the request
#else
    return fopen(path, "r");
#endif
}

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

    FILE *f = open_mailbox(v.mailbox);
    if (!f) {
        fprintf(out, "Status: 404 Not Found\r\nContent-Type: text/plain\r\n\r\nno mailbox for %s\n", user);
        return;
    }
    fprintf(out, "Content-Type: text/plain; charset=utf-8\r\n\r\n");
    fprintf(out, "Mail for %s\n", v.name);
    char line[MAX_MESSAGE];
    int k = 0, want = query_param(query, "n", arg, sizeof arg) ? atoi(arg) : 0;
    while (fgets(line, sizeof line, f)) {
        k++;
        if (!strcmp(action, "list")) {
            fprintf(out, "%d: %s", k, line);
        } else if (!strcmp(action, "show") && k == want) {
            size_t len = strlen(line);
            memcpy(message, line, len);  // the rest of `message` still holds the previous request's message
            if (query_param(query, "len", arg, sizeof arg)) len = (size_t)atoi(arg);
            if (len > sizeof message) len = sizeof message;
            fwrite(message, 1, len, out);  // BUG 2: `len` is the client's, not the message's
        }
    }
    fclose(f);
}

#ifdef MAIL_KV
// The component: the request's query, MAIL_USER from the tenant's env, the CGI response parsed back into
// a wasi:http response.
void exports_wasi_http_incoming_handler_handle(request_t request, outparam_t response) {
    char *path = request_path(request);
    wasi_http_types_incoming_request_drop_own(request);
    const char *query = strchr(path, '?') ? strchr(path, '?') + 1 : "";
    const char *user = getenv("MAIL_USER");
    char *text = NULL;
    size_t len = 0;
    out = open_memstream(&text, &len);
    if (user) {
        handle(user, query);
    } else {
        fprintf(out, "Status: 500 Internal Server Error\r\nContent-Type: text/plain\r\n\r\nMAIL_USER is not set\n");
    }
    fclose(out);
    int status = 200;
    char *body = strstr(text, "\r\n\r\n");
    body = body ? body + 4 : text + len;
    if (!strncmp(text, "Status: ", 8)) status = atoi(text + 8);
    response_t r = respond(response, status, "text/plain; charset=utf-8", NULL);
    body_write(&r, body, len - (size_t)(body - text));
    body_finish(&r);
    free(text);
    free(path);
}
#else
int main(int argc, char **argv) {
    out = stdout;
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
#endif
