#include <stdlib.h>

#include "devices/acpi_pm.h"

#define SLP_EN (1u << 5)
#define SLP_TYP(v) (((v) >> 2) & 7)
#define S5 5

struct acpi_pm {
    struct vm_env *env;
};

static uint64_t pm_read(void *dev, uint64_t off, uint8_t size) {
    (void)dev, (void)off, (void)size;
    return 0;
}

static void pm_write(void *dev, uint64_t off, uint8_t size, uint64_t value) {
    (void)size;
    struct acpi_pm *p = dev;
    if ((off == 0 && (value & SLP_EN) && SLP_TYP(value) == S5) || (off == 2 && value == 1))
        p->env->request_exit(p->env, 0);
}

const struct io_ops acpi_pm_ops = {.name = "acpi-pm", .read = pm_read, .write = pm_write};

struct acpi_pm *acpi_pm_create(struct vm_env *env) {
    struct acpi_pm *p = calloc(1, sizeof *p);
    if (p) p->env = env;
    return p;
}

void acpi_pm_destroy(struct acpi_pm *p) { free(p); }
