// A visit counter on wasi:keyvalue: every request adds one to "visits" in the tenant's "default" bucket
// (atomically, however many requests run at once, on one node or many) and says which visitor this is.
#include <stdio.h>
#include "palisade_http.h"

void exports_wasi_http_incoming_handler_handle(request_t request, outparam_t out) {
    wasi_http_types_incoming_request_drop_own(request);
    proxy_string_t name = {(uint8_t *)"default", 7}, key = {(uint8_t *)"visits", 6};
    wasi_keyvalue_store_own_bucket_t bucket;
    wasi_keyvalue_store_error_t err;
    uint64_t visits;
    if (!wasi_keyvalue_store_open(&name, &bucket, &err)) {
        wasi_keyvalue_store_error_free(&err);
        respond_text(out, 503, "the counter's storage is unavailable\n");
        return;
    }
    bool counted = wasi_keyvalue_atomics_increment(wasi_keyvalue_store_borrow_bucket(bucket), &key, 1, &visits, &err);
    wasi_keyvalue_store_bucket_drop_own(bucket);
    if (!counted) {
        char text[512];
        const char *why = err.tag == WASI_KEYVALUE_STORE_ERROR_OTHER ? (const char *)err.val.other.ptr : "error";
        int len = err.tag == WASI_KEYVALUE_STORE_ERROR_OTHER ? (int)err.val.other.len : 5;
        snprintf(text, sizeof text, "cannot count this visit: %.*s\n", len, why);
        wasi_keyvalue_store_error_free(&err);
        respond_text(out, 503, text);
        return;
    }
    char text[128];
    snprintf(text, sizeof text, "You are visitor number %llu.\n", (unsigned long long)visits);
    respond_text(out, 200, text);
}
