/* The seccomp programs tools/sandbox_rules.c compiles at build time (build/gen/sandbox_filters.c),
 * indexed by enum sandbox_role. */
#ifndef BELLHOP_VMM_SANDBOX_SANDBOX_FILTERS_H
#define BELLHOP_VMM_SANDBOX_SANDBOX_FILTERS_H

#include <linux/filter.h>

#include "vmm/sandbox/sandbox.h"

extern const struct sock_fprog sandbox_filters[SANDBOX_ROLES];

#endif
