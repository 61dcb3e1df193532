// Small helpers for wasi:http/proxy components written in C against wit-bindgen's generated bindings.
// Header-only so every guest stays a single translation unit plus the generated proxy.c.
#ifndef PALISADE_HTTP_H
#define PALISADE_HTTP_H

#include <stdlib.h>
#include <string.h>
#include "proxy.h"

typedef exports_wasi_http_incoming_handler_own_incoming_request_t request_t;
typedef exports_wasi_http_incoming_handler_own_response_outparam_t outparam_t;

// A growable byte buffer.
typedef struct {
    char *ptr;
    size_t len, cap;
} buf_t;

static inline void buf_put(buf_t *b, const void *data, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        while (cap < b->len + n + 1) cap *= 2;
        b->ptr = realloc(b->ptr, cap);
        b->cap = cap;
    }
    memcpy(b->ptr + b->len, data, n);
    b->len += n;
    b->ptr[b->len] = 0;
}

static inline void buf_str(buf_t *b, const char *s) { buf_put(b, s, strlen(s)); }

static inline const char *method_name(wasi_http_types_method_t *m) {
    static const char *names[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"};
    return m->tag < 9 ? names[m->tag] : "OTHER";
}

// The request's path and query as a NUL-terminated string (caller frees).
static inline char *request_path(request_t req) {
    proxy_string_t s;
    char *out;
    if (!wasi_http_types_method_incoming_request_path_with_query(wasi_http_types_borrow_incoming_request(req), &s)) {
        return strdup("/");
    }
    out = malloc(s.len + 1);
    memcpy(out, s.ptr, s.len);
    out[s.len] = 0;
    proxy_string_free(&s);
    return out;
}

// Appends "name: value\n" for every request header.
static inline void request_headers(request_t req, buf_t *out) {
    wasi_http_types_own_headers_t headers =
        wasi_http_types_method_incoming_request_headers(wasi_http_types_borrow_incoming_request(req));
    wasi_http_types_list_tuple2_field_name_field_value_t entries;
    wasi_http_types_method_fields_entries(wasi_http_types_borrow_fields(headers), &entries);
    for (size_t i = 0; i < entries.len; i++) {
        buf_put(out, entries.ptr[i].f0.ptr, entries.ptr[i].f0.len);
        buf_str(out, ": ");
        buf_put(out, entries.ptr[i].f1.ptr, entries.ptr[i].f1.len);
        buf_str(out, "\n");
    }
    wasi_http_types_list_tuple2_field_name_field_value_free(&entries);
    wasi_http_types_fields_drop_own(headers);
}

// Reads the whole request body into `out`.
static inline void request_body(request_t req, buf_t *out) {
    wasi_http_types_own_incoming_body_t body;
    wasi_io_streams_own_input_stream_t stream;
    if (!wasi_http_types_method_incoming_request_consume(wasi_http_types_borrow_incoming_request(req), &body)) return;
    if (wasi_http_types_method_incoming_body_stream(wasi_http_types_borrow_incoming_body(body), &stream)) {
        for (;;) {
            proxy_list_u8_t chunk;
            wasi_io_streams_stream_error_t err;
            if (!wasi_io_streams_method_input_stream_blocking_read(wasi_io_streams_borrow_input_stream(stream), 65536,
                                                                  &chunk, &err)) {
                break;  // closed or failed
            }
            buf_put(out, chunk.ptr, chunk.len);
            proxy_list_u8_free(&chunk);
        }
        wasi_io_streams_input_stream_drop_own(stream);
    }
    wasi_http_types_incoming_body_drop_own(body);
}

static inline void add_header(wasi_http_types_own_fields_t fields, const char *name, const char *value) {
    proxy_string_t n = {(uint8_t *)name, strlen(name)};
    wasi_http_types_field_value_t v = {(uint8_t *)value, strlen(value)};
    wasi_http_types_header_error_t err;
    wasi_http_types_method_fields_append(wasi_http_types_borrow_fields(fields), &n, &v, &err);
}

// A response whose body is then written with body_write and ended with body_finish.
typedef struct {
    wasi_http_types_own_outgoing_body_t body;
    wasi_io_streams_own_output_stream_t stream;
} response_t;

// Sends the response head. Extra headers come as a NULL-terminated list of name, value pairs.
static inline response_t respond(outparam_t out, int status, const char *content_type, const char **extra) {
    response_t r;
    wasi_http_types_own_fields_t headers = wasi_http_types_constructor_fields();
    add_header(headers, "content-type", content_type);
    for (; extra && extra[0]; extra += 2) add_header(headers, extra[0], extra[1]);
    wasi_http_types_own_outgoing_response_t response = wasi_http_types_constructor_outgoing_response(headers);
    wasi_http_types_method_outgoing_response_set_status_code(wasi_http_types_borrow_outgoing_response(response),
                                                             status);
    wasi_http_types_method_outgoing_response_body(wasi_http_types_borrow_outgoing_response(response), &r.body);
    wasi_http_types_result_own_outgoing_response_error_code_t result = {.is_err = false, .val = {.ok = response}};
    wasi_http_types_static_response_outparam_set(out, &result);
    wasi_http_types_method_outgoing_body_write(wasi_http_types_borrow_outgoing_body(r.body), &r.stream);
    return r;
}

// Writes bytes to the response body, in pieces of at most 4096 bytes as blocking-write-and-flush requires.
// Returns 0 once the stream has failed (the client went away, or the host cut the response off).
static inline int body_write(response_t *r, const void *data, size_t len) {
    const uint8_t *p = data;
    while (len > 0) {
        size_t n = len > 4096 ? 4096 : len;
        proxy_list_u8_t bytes = {(uint8_t *)p, n};
        wasi_io_streams_stream_error_t err;
        if (!wasi_io_streams_method_output_stream_blocking_write_and_flush(
                wasi_io_streams_borrow_output_stream(r->stream), &bytes, &err)) {
            return 0;
        }
        p += n;
        len -= n;
    }
    return 1;
}

static inline void body_finish(response_t *r) {
    wasi_io_streams_output_stream_drop_own(r->stream);
    wasi_http_types_error_code_t body_err;
    wasi_http_types_static_outgoing_body_finish(r->body, NULL, &body_err);
}

// A whole response in one call.
static inline void respond_text(outparam_t out, int status, const char *text) {
    response_t r = respond(out, status, "text/plain; charset=utf-8", NULL);
    body_write(&r, text, strlen(text));
    body_finish(&r);
}

#endif
