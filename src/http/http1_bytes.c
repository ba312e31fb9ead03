#include "http/http1_bytes.h"

#include "http/http1.h"

const uint8_t http1_ctype[256] = TABLE(CTYPE);
const int8_t http1_hexval[256] = TABLE(HEXVAL);
const uint8_t http1_lower[256] = TABLE(LOWER);

int http1_hex_digit(unsigned char c)
{
    return http1_hexval[c];
}
