#include "util/evbuf.h"

#include <event2/buffer.h>

void evbuf_move(struct evbuffer *in, struct evbuffer *out, size_t n)
{
    if (n == 0)
        return;
    if (n > EVBUF_COALESCE_MAX) {
        evbuffer_remove_buffer(in, out, n);
        return;
    }
    evbuffer_add(out, evbuffer_pullup(in, (ssize_t)n), n);
    evbuffer_drain(in, n);
}
