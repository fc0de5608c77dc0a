/* backend.c - the registry of backend tables, looked up by name. */
#include <string.h>

#include "kernels/backend.h"

static const bp_backend *const backends[] = {&bp_backend_blas, &bp_backend_naive};
enum { N_BACKENDS = sizeof backends / sizeof backends[0] };

const bp_backend *bp_backend_find(const char *name)
{
    for (int i = 0; i < N_BACKENDS; i++)
        if (name && strcmp(backends[i]->name, name) == 0)
            return backends[i];
    return NULL;
}

int bp_backend_count(void) { return N_BACKENDS; }

const char *bp_backend_name(int index)
{
    return index >= 0 && index < N_BACKENDS ? backends[index]->name : NULL;
}
