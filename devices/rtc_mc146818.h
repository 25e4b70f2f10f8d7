#ifndef BELLHOP_DEVICES_RTC_MC146818_H
#define BELLHOP_DEVICES_RTC_MC146818_H

#include "devices/device.h"

/* The PC's CMOS clock (MC146818) at ports 0x70/0x71: the host's UTC time, read-only, in
 * BCD or binary and 12/24-hour modes as register B asks, plus 128 bytes of CMOS RAM.
 * Without it a stock Linux kernel polls for seconds at boot. */
#define RTC_PORT 0x70

struct rtc_mc146818;
extern const struct io_ops rtc_mc146818_ops;
struct rtc_mc146818 *rtc_mc146818_create(void);
void rtc_mc146818_destroy(struct rtc_mc146818 *r);

#endif
