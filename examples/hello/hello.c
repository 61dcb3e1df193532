// The smallest useful wasi:http/proxy component: greets with the tenant's GREETING and echoes the path.
#include <stdio.h>
#include "palisade_http.h"

void exports_wasi_http_incoming_handler_handle(request_t request, outparam_t out) {
    char *path = request_path(request);
    const char *greeting = getenv("GREETING");
    char text[512];
    snprintf(text, sizeof text, "%s from a wasi:http component! You asked for %s\n", greeting ? greeting : "hello",
             path);
    free(path);
    wasi_http_types_incoming_request_drop_own(request);
    respond_text(out, 200, text);
}
