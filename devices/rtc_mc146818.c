#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "devices/rtc_mc146818.h"

enum { SEC = 0, MIN = 2, HOUR = 4, WDAY = 6, MDAY = 7, MON = 8, YEAR = 9,
       REG_A = 0x0a, REG_B = 0x0b, REG_C = 0x0c, REG_D = 0x0d, CENTURY = 0x32 };
#define B_24H 0x02
#define B_BINARY 0x04
#define D_VRT 0x80 /* battery good */

struct rtc_mc146818 {
    pthread_mutex_t lock;
    uint8_t index;
    uint8_t ram[128];
};

static uint8_t enc(const struct rtc_mc146818 *r, unsigned v) {
    return (r->ram[REG_B] & B_BINARY) ? (uint8_t)v : (uint8_t)((v / 10) << 4 | (v % 10));
}

static uint8_t clock_reg(const struct rtc_mc146818 *r, uint8_t reg) {
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    switch (reg) {
    case SEC: return enc(r, (unsigned)tm.tm_sec);
    case MIN: return enc(r, (unsigned)tm.tm_min);
    case HOUR:
        if (r->ram[REG_B] & B_24H) return enc(r, (unsigned)tm.tm_hour);
        return (uint8_t)(enc(r, tm.tm_hour % 12 ? (unsigned)tm.tm_hour % 12 : 12) | (tm.tm_hour >= 12 ? 0x80 : 0));
    case WDAY: return enc(r, (unsigned)tm.tm_wday + 1);
    case MDAY: return enc(r, (unsigned)tm.tm_mday);
    case MON: return enc(r, (unsigned)tm.tm_mon + 1);
    case YEAR: return enc(r, (unsigned)tm.tm_year % 100);
    case CENTURY: return enc(r, (unsigned)(tm.tm_year + 1900) / 100);
    default: return r->ram[reg];
    }
}

static uint64_t rtc_read(void *dev, uint64_t off, uint8_t size) {
    (void)size;
    struct rtc_mc146818 *r = dev;
    pthread_mutex_lock(&r->lock);
    uint8_t v = 0xff;
    if (off == 1) {
        uint8_t reg = r->index & 0x7f;
        v = clock_reg(r, reg);
        if (reg == REG_C) r->ram[REG_C] = 0; /* reading C clears its flags */
    }
    pthread_mutex_unlock(&r->lock);
    return v;
}

static void rtc_write(void *dev, uint64_t off, uint8_t size, uint64_t value) {
    (void)size;
    struct rtc_mc146818 *r = dev;
    pthread_mutex_lock(&r->lock);
    if (off == 0) {
        r->index = (uint8_t)value; /* bit 7 masks NMIs: nothing to do here */
    } else {
        uint8_t reg = r->index & 0x7f;
        /* The clock follows the host: its time registers and C/D are read-only. */
        if (reg == REG_A) r->ram[REG_A] = (uint8_t)(value & 0x7f); /* UIP stays clear */
        else if (reg == REG_B) r->ram[REG_B] = (uint8_t)value;
        else if (reg > REG_D && reg != CENTURY) r->ram[reg] = (uint8_t)value;
    }
    pthread_mutex_unlock(&r->lock);
}

struct rtc_wire {
    uint8_t index;
    uint8_t ram[128];
};

/* The clock registers are read from the host's clock, not kept: a restored guest reads the
 * time of day it is restored at, as after a suspend. */
static size_t rtc_save(void *dev, uint8_t *buf, size_t len) {
    struct rtc_mc146818 *r = dev;
    struct rtc_wire w;
    pthread_mutex_lock(&r->lock);
    w.index = r->index;
    memcpy(w.ram, r->ram, sizeof w.ram);
    pthread_mutex_unlock(&r->lock);
    return DEVICE_SAVE(buf, len, w);
}

static int rtc_restore(void *dev, const uint8_t *buf, size_t len, char *err, size_t errlen) {
    struct rtc_mc146818 *r = dev;
    struct rtc_wire w;
    if (DEVICE_RESTORE_LEN("rtc", len, w, err, errlen) != 0) return -1;
    memcpy(&w, buf, sizeof w);
    pthread_mutex_lock(&r->lock);
    r->index = w.index & 0x7f;
    memcpy(r->ram, w.ram, sizeof r->ram);
    pthread_mutex_unlock(&r->lock);
    return 0;
}

const struct io_ops rtc_mc146818_ops = {.name = "rtc", .read = rtc_read, .write = rtc_write, .save = rtc_save,
                                        .restore = rtc_restore};

struct rtc_mc146818 *rtc_mc146818_create(void) {
    struct rtc_mc146818 *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    pthread_mutex_init(&r->lock, NULL);
    /* glibc loads the time zone (opening /etc/localtime) on its first conversion, even for
     * gmtime_r: now, at setup, rather than on a vCPU thread under its sandbox. */
    tzset();
    r->ram[REG_A] = 0x26; /* 32.768 kHz time base, 1024 Hz rate */
    r->ram[REG_B] = B_24H;
    r->ram[REG_D] = D_VRT;
    return r;
}

void rtc_mc146818_destroy(struct rtc_mc146818 *r) {
    if (!r) return;
    pthread_mutex_destroy(&r->lock);
    free(r);
}
