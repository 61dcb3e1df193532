// A wasi:keyvalue test guest: one key-value operation per request, named in the query string.
//   ?op=get|set|delete|exists|incr|list&bucket=NAME&key=KEY&value=VALUE&delta=N   (percent-encoded)
// Answers 200 with the result (get: the value, or 404 "absent"; exists: true/false; incr: the new value;
// list: one key per line), or 503 "kv error: ..." with the store's error, as a real app would.
#include <stdio.h>
#include "palisade_http.h"

static int hex(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// The decoded value of `name` in `query` (caller frees), or NULL. Decoded length in *len (values may hold NUL).
static char *param(const char *query, const char *name, size_t *len) {
    size_t n = strlen(name);
    for (const char *p = query; p && *p; p = strchr(p, '&') ? strchr(p, '&') + 1 : NULL) {
        if (strncmp(p, name, n) != 0 || p[n] != '=') continue;
        const char *v = p + n + 1;
        const char *end = strchr(v, '&');
        if (!end) end = v + strlen(v);
        char *out = malloc(end - v + 1);
        size_t o = 0;
        for (const char *c = v; c < end; c++) {
            if (*c == '%' && c + 2 < end && hex(c[1]) >= 0 && hex(c[2]) >= 0) {
                out[o++] = (char)(hex(c[1]) * 16 + hex(c[2]));
                c += 2;
            } else {
                out[o++] = *c == '+' ? ' ' : *c;
            }
        }
        out[o] = 0;
        if (len) *len = o;
        return out;
    }
    return NULL;
}

static void fail(outparam_t out, wasi_keyvalue_store_error_t *err) {
    char text[1024];
    if (err->tag == WASI_KEYVALUE_STORE_ERROR_OTHER) {
        snprintf(text, sizeof text, "kv error: %.*s\n", (int)err->val.other.len, (char *)err->val.other.ptr);
    } else {
        snprintf(text, sizeof text, "kv error: %s\n",
                 err->tag == WASI_KEYVALUE_STORE_ERROR_NO_SUCH_STORE ? "no such store" : "access denied");
    }
    wasi_keyvalue_store_error_free(err);
    respond_text(out, 503, text);
}

void exports_wasi_http_incoming_handler_handle(request_t request, outparam_t out) {
    char *path = request_path(request);
    wasi_http_types_incoming_request_drop_own(request);
    const char *query = strchr(path, '?') ? strchr(path, '?') + 1 : "";
    size_t bucket_len = 0, key_len = 0, value_len = 0;
    char *op = param(query, "op", NULL);
    char *bucket = param(query, "bucket", &bucket_len);
    char *key = param(query, "key", &key_len);
    char *value = param(query, "value", &value_len);
    char *delta = param(query, "delta", NULL);
    if (!op) op = strdup("get");
    if (!bucket) bucket = strdup("default"), bucket_len = strlen(bucket);
    if (!key) key = strdup("key"), key_len = strlen(key);

    wasi_keyvalue_store_error_t err;
    wasi_keyvalue_store_own_bucket_t handle;
    proxy_string_t name = {(uint8_t *)bucket, bucket_len};
    proxy_string_t k = {(uint8_t *)key, key_len};
    if (!wasi_keyvalue_store_open(&name, &handle, &err)) {
        fail(out, &err);
        goto done;
    }
    wasi_keyvalue_store_borrow_bucket_t b = wasi_keyvalue_store_borrow_bucket(handle);
    if (strcmp(op, "get") == 0) {
        proxy_option_list_u8_t got;
        if (!wasi_keyvalue_store_method_bucket_get(b, &k, &got, &err)) {
            fail(out, &err);
        } else if (!got.is_some) {
            respond_text(out, 404, "absent\n");
        } else {
            response_t r = respond(out, 200, "application/octet-stream", NULL);
            body_write(&r, got.val.ptr, got.val.len);
            body_finish(&r);
            proxy_list_u8_free(&got.val);
        }
    } else if (strcmp(op, "set") == 0) {
        proxy_list_u8_t v = {(uint8_t *)(value ? value : ""), value ? value_len : 0};
        if (wasi_keyvalue_store_method_bucket_set(b, &k, &v, &err)) respond_text(out, 200, "ok\n");
        else fail(out, &err);
    } else if (strcmp(op, "delete") == 0) {
        if (wasi_keyvalue_store_method_bucket_delete(b, &k, &err)) respond_text(out, 200, "ok\n");
        else fail(out, &err);
    } else if (strcmp(op, "exists") == 0) {
        bool yes;
        if (wasi_keyvalue_store_method_bucket_exists(b, &k, &yes, &err)) respond_text(out, 200, yes ? "true\n" : "false\n");
        else fail(out, &err);
    } else if (strcmp(op, "incr") == 0) {
        uint64_t now;
        if (wasi_keyvalue_atomics_increment(b, &k, delta ? strtoull(delta, NULL, 10) : 1, &now, &err)) {
            char text[32];
            snprintf(text, sizeof text, "%llu\n", (unsigned long long)now);
            respond_text(out, 200, text);
        } else {
            fail(out, &err);
        }
    } else if (strcmp(op, "list") == 0) {
        wasi_keyvalue_store_key_response_t page;
        if (wasi_keyvalue_store_method_bucket_list_keys(b, NULL, &page, &err)) {
            buf_t text = {0};
            for (size_t i = 0; i < page.keys.len; i++) {
                buf_put(&text, page.keys.ptr[i].ptr, page.keys.ptr[i].len);
                buf_str(&text, "\n");
            }
            respond_text(out, 200, text.ptr ? text.ptr : "");
            free(text.ptr);
            wasi_keyvalue_store_key_response_free(&page);
        } else {
            fail(out, &err);
        }
    } else {
        respond_text(out, 400, "unknown op\n");
    }
    wasi_keyvalue_store_bucket_drop_own(handle);
done:
    free(path), free(op), free(bucket), free(key), free(value), free(delta);
}
