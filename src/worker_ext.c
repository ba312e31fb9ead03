#include "worker_ext.h"

#include "worker.h"

int worker_ext_init(struct worker *w, char *err, size_t errlen)
{
    return 0;
}

void worker_ext_reload(struct worker *w)
{
}

void worker_ext_free(struct worker *w)
{
}
