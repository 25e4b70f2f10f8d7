/* Freestanding pieces of a C library: what our code and libfdt need. */
#include "guest/lib.h"

/* memcpy and memset as string instructions, eight bytes a step: where KVM emulates the guest
 * (a PVM host), each step of a loop costs microseconds, so a step per byte would make copying
 * a 64 KiB buffer take most of a second. (The direction flag is clear: entry.S's cld.) */
void *memcpy(void *d, const void *s, size_t n) {
    void *dd = d;
    size_t words = n / 8, bytes = n % 8;
    __asm__ volatile("rep movsq" : "+D"(dd), "+S"(s), "+c"(words)::"memory");
    __asm__ volatile("rep movsb" : "+D"(dd), "+S"(s), "+c"(bytes)::"memory");
    return d;
}
void *memmove(void *d, const void *s, size_t n) {
    uint8_t *dd = d;
    const uint8_t *ss = s;
    if (dd < ss) return memcpy(d, s, n);
    while (n--) dd[n] = ss[n];
    return d;
}
void *memset(void *d, int c, size_t n) {
    void *dd = d;
    size_t words = n / 8, bytes = n % 8;
    uint64_t v = (uint8_t)c * 0x0101010101010101ull;
    __asm__ volatile("rep stosq" : "+D"(dd), "+c"(words) : "a"(v) : "memory");
    __asm__ volatile("rep stosb" : "+D"(dd), "+c"(bytes) : "a"(v) : "memory");
    return d;
}
int memcmp(const void *a, const void *b, size_t n) {
    const uint8_t *x = a, *y = b;
    for (; n; n--, x++, y++)
        if (*x != *y) return *x - *y;
    return 0;
}
void *memchr(const void *s, int c, size_t n) {
    const uint8_t *p = s;
    for (; n; n--, p++)
        if (*p == (uint8_t)c) return (void *)p;
    return NULL;
}
size_t strlen(const char *s) {
    size_t n = 0;
    while (s[n]) n++;
    return n;
}
size_t strnlen(const char *s, size_t max) {
    size_t n = 0;
    while (n < max && s[n]) n++;
    return n;
}
char *strchr(const char *s, int c) {
    for (;; s++) {
        if (*s == (char)c) return (char *)s;
        if (!*s) return NULL;
    }
}
char *strrchr(const char *s, int c) {
    const char *last = NULL;
    for (;; s++) {
        if (*s == (char)c) last = s;
        if (!*s) return (char *)last;
    }
}
int strcmp(const char *a, const char *b) {
    while (*a && *a == *b) a++, b++;
    return (uint8_t)*a - (uint8_t)*b;
}
int strncmp(const char *a, const char *b, size_t n) {
    for (; n; n--, a++, b++) {
        if (*a != *b) return (uint8_t)*a - (uint8_t)*b;
        if (!*a) return 0;
    }
    return 0;
}
unsigned long strtoul(const char *s, char **end, int base) {
    unsigned long v = 0;
    while (*s == ' ') s++;
    if ((base == 0 || base == 16) && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        s += 2;
        base = 16;
    } else if (base == 0) {
        base = s[0] == '0' ? 8 : 10;
    }
    for (;; s++) {
        int d;
        if (*s >= '0' && *s <= '9') d = *s - '0';
        else if (*s >= 'a' && *s <= 'z') d = *s - 'a' + 10;
        else if (*s >= 'A' && *s <= 'Z') d = *s - 'A' + 10;
        else break;
        if (d >= base) break;
        v = v * (unsigned long)base + (unsigned long)d;
    }
    if (end) *end = (char *)s;
    return v;
}

/* libfdt is built with the stack protector. */
void __stack_chk_fail(void) {
    printf("guest: stack smashing detected\n");
    guest_exit(99);
}

/* ---- formatted output ---- */

struct out {
    char *buf;
    size_t size, len;
};

static void put(struct out *o, char c) {
    if (o->len + 1 < o->size) o->buf[o->len] = c;
    o->len++;
}

static void put_num(struct out *o, unsigned long long v, unsigned base, int width, char pad, bool neg) {
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = "0123456789abcdef"[v % base];
        v /= base;
    } while (v);
    if (neg) tmp[n++] = '-';
    for (int i = n; i < width; i++) put(o, pad);
    while (n) put(o, tmp[--n]);
}

int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap) {
    struct out o = {buf, size, 0};
    for (; *fmt; fmt++) {
        if (*fmt != '%') {
            put(&o, *fmt);
            continue;
        }
        fmt++;
        char pad = ' ';
        int width = 0, longs = 0;
        bool left = false;
        if (*fmt == '-') left = true, fmt++;
        if (*fmt == '0') pad = '0', fmt++;
        while (*fmt >= '0' && *fmt <= '9') width = width * 10 + (*fmt++ - '0');
        while (*fmt == 'l') longs++, fmt++;
        if (*fmt == 'z') longs = 1, fmt++;
        switch (*fmt) {
        case 'd': {
            long long v = longs ? va_arg(ap, long long) : va_arg(ap, int);
            put_num(&o, v < 0 ? -(unsigned long long)v : (unsigned long long)v, 10, width, pad, v < 0);
            break;
        }
        case 'u':
        case 'x': {
            unsigned long long v = longs ? va_arg(ap, unsigned long long) : va_arg(ap, unsigned);
            put_num(&o, v, *fmt == 'x' ? 16 : 10, width, pad, false);
            break;
        }
        case 'p':
            put(&o, '0'), put(&o, 'x');
            put_num(&o, (uintptr_t)va_arg(ap, void *), 16, width, pad, false);
            break;
        case 's': {
            const char *s = va_arg(ap, const char *);
            if (!s) s = "(null)";
            int n = (int)strlen(s);
            if (!left)
                for (int i = n; i < width; i++) put(&o, ' ');
            while (*s) put(&o, *s++);
            if (left)
                for (int i = n; i < width; i++) put(&o, ' ');
            break;
        }
        case 'c':
            put(&o, (char)va_arg(ap, int));
            break;
        case '%':
            put(&o, '%');
            break;
        default:
            put(&o, '%'), put(&o, *fmt);
            if (!*fmt) fmt--;
        }
    }
    if (size) buf[o.len < size ? o.len : size - 1] = 0;
    return (int)o.len;
}

int snprintf(char *buf, size_t size, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    return n;
}

#define MAX_SINKS 4
static void (*sinks[MAX_SINKS])(const char *, size_t);

void console_add_sink(void (*write)(const char *s, size_t n)) {
    for (int i = 0; i < MAX_SINKS; i++)
        if (!sinks[i]) {
            sinks[i] = write;
            return;
        }
}

int printf(const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1;
    for (int i = 0; i < MAX_SINKS; i++)
        if (sinks[i]) sinks[i](buf, len);
    return n;
}

_Noreturn void guest_exit(int status) {
    for (;;) outb(EXIT_PORT, (uint8_t)status);
}
