// Test component: behaviour chosen by the request path (the last matching keyword wins).
//   /echo      method, path, headers and body back, as text
//   /stream    a body written in five separate chunks
//   /status/N  an empty response with status N
//   /env       GREETING from the environment
//   /trap      executes `unreachable`
//   /loop      spins forever (the deadline must stop it)
//   /membomb   allocates until memory runs out
//   /noresponse returns without ever setting a response
//   /exit      calls exit(0) before responding
#include <stdio.h>
#include "palisade_http.h"

char *volatile sink;

static void echo(request_t request, outparam_t out, const char *path) {
    wasi_http_types_method_t m;
    wasi_http_types_method_incoming_request_method(wasi_http_types_borrow_incoming_request(request), &m);
    buf_t text = {0};
    buf_str(&text, "method=");
    buf_str(&text, method_name(&m));
    buf_str(&text, "\nuri=");
    buf_str(&text, path);
    buf_str(&text, "\n");
    request_headers(request, &text);
    buf_t body = {0};
    request_body(request, &body);
    char line[64];
    snprintf(line, sizeof line, "body-length=%zu\nbody=", body.len);
    buf_str(&text, line);
    if (body.len) buf_put(&text, body.ptr, body.len);
    wasi_http_types_incoming_request_drop_own(request);
    const char *extra[] = {"x-echo", "yes", NULL};
    response_t r = respond(out, 200, "text/plain", extra);
    body_write(&r, text.ptr, text.len);
    body_finish(&r);
}

void exports_wasi_http_incoming_handler_handle(request_t request, outparam_t out) {
    char *path = request_path(request);
    if (strstr(path, "/echo")) {
        echo(request, out, path);
    } else if (strstr(path, "/trap")) {
        __builtin_trap();
    } else if (strstr(path, "/loop")) {
        for (volatile unsigned long i = 0;; i++) {
        }
    } else if (strstr(path, "/membomb")) {
        for (;;) {
            char *p = malloc(1 << 20);
            if (!p) __builtin_trap();
            memset(p, 1, 1 << 20);
            sink = p;  // observable, so the compiler cannot elide the allocation
        }
    } else if (strstr(path, "/exit")) {
        exit(0);
    } else if (strstr(path, "/noresponse")) {
        wasi_http_types_incoming_request_drop_own(request);
    } else if (strstr(path, "/stream")) {
        wasi_http_types_incoming_request_drop_own(request);
        response_t r = respond(out, 200, "text/plain", NULL);
        for (int i = 0; i < 5; i++) {
            char chunk[32];
            int n = snprintf(chunk, sizeof chunk, "chunk %d\n", i);
            body_write(&r, chunk, (size_t)n);
        }
        body_finish(&r);
    } else if (strstr(path, "/status/")) {
        int status = atoi(strstr(path, "/status/") + 8);
        wasi_http_types_incoming_request_drop_own(request);
        respond_text(out, status, "");
    } else if (strstr(path, "/env")) {
        const char *g = getenv("GREETING");
        wasi_http_types_incoming_request_drop_own(request);
        respond_text(out, 200, g ? g : "(unset)");
    } else {
        wasi_http_types_incoming_request_drop_own(request);
        respond_text(out, 200, "probe ok\n");
    }
    free(path);
}
