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
// Traps of every kind, each a 500:
//   /stackoverflow  unbounded recursion     /oob     a load far outside linear memory
//   /divzero        integer division by 0   /badcall an indirect call through a bad function pointer
// Responses that misbehave:
//   /huge/N    an N-MiB body               /endless  a body that never ends
//   /drip      one byte every 100 ms, forever          /stderr/N  N MiB to stderr, then 200
//   /sleep     waits (in the host, not spinning) for a minute without reading its request body
//   /hold/N    allocates N MiB, holds it for one second, then answers 200
//   /outbound?HOST:PORT  an outbound HTTP GET / (default 127.0.0.1:9); reports denied, failed or the status
// Files (only with component_data): /data-read  reads /data/note.txt   /data-write?X  writes X to it
// Memory left behind by earlier requests:
//   /remember?X  puts X in a static buffer and a freed heap block   /recall  shows what those hold now
#include <stdio.h>
#include "palisade_http.h"
#include <unistd.h>

char *volatile sink;
static char stash[64];
volatile int zero = 0;

static int recurse(volatile int depth) {
    volatile char frame[256];
    frame[0] = (char)depth;
    return recurse(depth + 1) + frame[0];
}

static void printable(buf_t *out, const char *label, const char *p, size_t n) {
    buf_str(out, label);
    for (size_t i = 0; i < n; i++) {
        char c = p[i] >= 32 && p[i] < 127 ? p[i] : '.';
        buf_put(out, &c, 1);
    }
    buf_str(out, "\n");
}

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
    } else if (strstr(path, "/stackoverflow")) {
        sink = (char *)(long)recurse(0);
    } else if (strstr(path, "/oob")) {
        sink = (char *)(long)*(volatile int *)(0xfffffff0u);
    } else if (strstr(path, "/divzero")) {
        sink = (char *)(long)(42 / zero);
    } else if (strstr(path, "/badcall")) {
        void (*volatile fn)(void) = (void (*)(void))(long)(0x7fffff + zero);
        fn();
    } else if (strstr(path, "/huge/")) {
        long mib = atol(strstr(path, "/huge/") + 6);
        wasi_http_types_incoming_request_drop_own(request);
        static char block[1 << 16];
        memset(block, 'x', sizeof block);
        response_t r = respond(out, 200, "application/octet-stream", NULL);
        for (long i = 0; i < mib * 16 && body_write(&r, block, sizeof block); i++) {
        }
        body_finish(&r);
    } else if (strstr(path, "/endless")) {
        wasi_http_types_incoming_request_drop_own(request);
        static char block[1 << 14];
        memset(block, 'y', sizeof block);
        response_t r = respond(out, 200, "application/octet-stream", NULL);
        while (body_write(&r, block, sizeof block)) {
        }
        body_finish(&r);
    } else if (strstr(path, "/drip")) {
        wasi_http_types_incoming_request_drop_own(request);
        response_t r = respond(out, 200, "text/plain", NULL);
        while (body_write(&r, ".", 1)) {
            usleep(100 * 1000);
        }
        body_finish(&r);
    } else if (strstr(path, "/stderr/")) {
        long mib = atol(strstr(path, "/stderr/") + 8);
        /* 1 KiB lines, written 64 KiB at a time: few host calls, so the test does not depend on how fast
           they are (cpu_time counts them). */
        static char block[64 << 10];
        memset(block, 'e', sizeof block);
        for (size_t i = 1023; i < sizeof block; i += 1024) block[i] = '\n';
        for (long i = 0; i < mib * 16; i++) fwrite(block, 1, sizeof block, stderr);
        wasi_http_types_incoming_request_drop_own(request);
        respond_text(out, 200, "wrote stderr\n");
    } else if (strstr(path, "/sleep")) {
        sleep(60);
        wasi_http_types_incoming_request_drop_own(request);
        respond_text(out, 200, "woke up\n");
    } else if (strstr(path, "/outbound")) {
        wasi_http_types_own_outgoing_request_t req =
            wasi_http_types_constructor_outgoing_request(wasi_http_types_constructor_fields());
        // The backend is the query (`/outbound?127.0.0.1:8000`), by default a port nothing listens on.
        const char *query = strchr(path, '?');
        const char *target = query && query[1] ? query + 1 : "127.0.0.1:9";
        proxy_string_t authority = {(uint8_t *)target, strlen(target)};
        proxy_string_t path_only = {(uint8_t *)"/", 1};
        wasi_http_types_scheme_t scheme = {.tag = WASI_HTTP_TYPES_SCHEME_HTTP};
        wasi_http_types_borrow_outgoing_request_t r = wasi_http_types_borrow_outgoing_request(req);
        wasi_http_types_method_outgoing_request_set_scheme(r, &scheme);
        wasi_http_types_method_outgoing_request_set_authority(r, &authority);
        wasi_http_types_method_outgoing_request_set_path_with_query(r, &path_only);
        wasi_http_outgoing_handler_own_future_incoming_response_t future;
        wasi_http_outgoing_handler_error_code_t err;
        char outcome[96] = "sent\n";
        bool failed = !wasi_http_outgoing_handler_handle(req, NULL, &future, &err);
        if (!failed) {  // the outcome may only be known once the response future is ready
            wasi_http_types_borrow_future_incoming_response_t f = wasi_http_types_borrow_future_incoming_response(future);
            wasi_http_types_own_pollable_t ready = wasi_http_types_method_future_incoming_response_subscribe(f);
            wasi_io_poll_method_pollable_block(wasi_io_poll_borrow_pollable(ready));
            wasi_io_poll_pollable_drop_own(ready);
            wasi_http_types_result_result_own_incoming_response_error_code_void_t got;
            if (wasi_http_types_method_future_incoming_response_get(f, &got) && !got.is_err) {
                if (got.val.ok.is_err) {
                    failed = true;
                    err = got.val.ok.val.err;
                } else {
                    wasi_http_types_borrow_incoming_response_t resp =
                        wasi_http_types_borrow_incoming_response(got.val.ok.val.ok);
                    int status = (int)wasi_http_types_method_incoming_response_status(resp);
                    // Read the whole body, to see whether the host cuts it off.
                    long bytes = 0;
                    bool cut = false;
                    wasi_http_types_own_incoming_body_t body;
                    wasi_io_streams_own_input_stream_t stream;
                    if (wasi_http_types_method_incoming_response_consume(resp, &body)) {
                        if (wasi_http_types_method_incoming_body_stream(wasi_http_types_borrow_incoming_body(body),
                                                                        &stream)) {
                            for (;;) {
                                proxy_list_u8_t chunk;
                                wasi_io_streams_stream_error_t serr;
                                if (!wasi_io_streams_method_input_stream_blocking_read(
                                        wasi_io_streams_borrow_input_stream(stream), 65536, &chunk, &serr)) {
                                    cut = serr.tag != WASI_IO_STREAMS_STREAM_ERROR_CLOSED;
                                    if (cut) wasi_io_streams_stream_error_free(&serr);
                                    break;
                                }
                                bytes += (long)chunk.len;
                                proxy_list_u8_free(&chunk);
                            }
                            wasi_io_streams_input_stream_drop_own(stream);
                        }
                        wasi_http_types_incoming_body_drop_own(body);
                    }
                    snprintf(outcome, sizeof outcome, "sent, status %d, %s%ld bytes\n", status,
                             cut ? "cut off after " : "", bytes);
                    wasi_http_types_incoming_response_drop_own(got.val.ok.val.ok);
                }
            }
            wasi_http_types_future_incoming_response_drop_own(future);
        }
        if (failed) {
            if (err.tag == WASI_HTTP_TYPES_ERROR_CODE_HTTP_REQUEST_DENIED) {
                strcpy(outcome, "denied\n");
            } else {
                snprintf(outcome, sizeof outcome, "failed with error %d\n", (int)err.tag);
            }
        }
        wasi_http_types_incoming_request_drop_own(request);
        respond_text(out, 200, outcome);
    } else if (strstr(path, "/hold/")) {
        long mib = atol(strstr(path, "/hold/") + 6);
        char *p = malloc((size_t)mib << 20);
        if (!p) __builtin_trap();
        memset(p, 1, (size_t)mib << 20);
        sink = p;
        sleep(1);
        wasi_http_types_incoming_request_drop_own(request);
        respond_text(out, 200, "held\n");
    } else if (strstr(path, "/data-read")) {
        char line[128] = "";
        FILE *f = fopen("/data/note.txt", "r");
        if (f && !fgets(line, sizeof line, f)) line[0] = 0;
        if (f) fclose(f);
        wasi_http_types_incoming_request_drop_own(request);
        respond_text(out, f ? 200 : 404, f ? line : "cannot open /data/note.txt\n");
    } else if (strstr(path, "/data-write")) {
        const char *q = strchr(path, '?');
        FILE *f = fopen("/data/note.txt", "w");
        if (f) {
            fputs(q ? q + 1 : "", f);
            fclose(f);
        }
        wasi_http_types_incoming_request_drop_own(request);
        respond_text(out, f ? 200 : 403, f ? "written\n" : "cannot write /data/note.txt\n");
    } else if (strstr(path, "/remember")) {
        const char *q = strchr(path, '?');
        const char *x = q ? q + 1 : "";
        strncpy(stash, x, sizeof stash - 1);
        char *heap = malloc(64);
        strncpy(heap, x, 63);
        heap[63] = 0;
        free(heap);
        wasi_http_types_incoming_request_drop_own(request);
        respond_text(out, 200, "remembered\n");
    } else if (strstr(path, "/recall")) {
        buf_t text = {0};
        printable(&text, "static=", stash, sizeof stash);
        char *heap = malloc(64);  // uninitialised: whatever this instance's heap holds there
        printable(&text, "heap=", heap, 64);
        wasi_http_types_incoming_request_drop_own(request);
        respond_text(out, 200, text.ptr);
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
    } else if (strstr(path, "/cacheable")) {
        wasi_http_types_incoming_request_drop_own(request);
        const char *extra[] = {"cache-control", "max-age=60", NULL};
        response_t r = respond(out, 200, "text/plain", extra);
        body_write(&r, "cacheable\n", 10);
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
