// The smallest CGI program: a header block, a blank line, a greeting.
#include <stdio.h>

int main(void) {
    printf("Content-Type: text/plain\r\n\r\nhello from CGI\n");
    return 0;
}
