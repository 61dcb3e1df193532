// A classic CGI program, unchanged C: prints its CGI environment and request body, and keeps a visit counter
// in the tenant's private /data directory.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

static long bump_counter(const char *path) {
    long n = 0;
    FILE *f = fopen(path, "r");
    if (f) {
        if (fscanf(f, "%ld", &n) != 1) n = 0;
        fclose(f);
    }
    n++;
    f = fopen(path, "w");
    if (!f) return -1;
    fprintf(f, "%ld\n", n);
    fclose(f);
    return n;
}

int main(void) {
    long visits = bump_counter("/data/visits.txt");
    printf("Content-Type: text/plain; charset=utf-8\r\n");
    printf("X-Visits: %ld\r\n\r\n", visits);
    printf("hello from CGI (%s)\n", getenv("GREETING") ? getenv("GREETING") : "no greeting");
    printf("visits: %ld\n\n", visits);
    for (char **e = environ; *e; e++) printf("%s\n", *e);

    const char *len = getenv("CONTENT_LENGTH");
    long n = len ? atol(len) : 0;
    if (n > 0) {
        printf("\nbody (%ld bytes):\n", n);
        char buf[4096];
        size_t got;
        while ((got = fread(buf, 1, sizeof buf, stdin)) > 0) fwrite(buf, 1, got, stdout);
        printf("\n");
    }
    return 0;
}
