/* The one-line reasons that setup, parsers and protocol code hand back to their callers:
 * formatted into the caller's err, -1 returned, so that a check and its reason are one line:
 *     if (len > max) return error_text(err, errlen, "%zu bytes, at most %zu", len, max);
 */
#ifndef BELLHOP_BASE_ERROR_TEXT_H
#define BELLHOP_BASE_ERROR_TEXT_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

__attribute__((format(printf, 3, 4))) static inline int error_text(char *err, size_t errlen, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

#endif
