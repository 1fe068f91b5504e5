/*
 * bounce.c - RFC 3464 delivery status notifications (placeholder).
 */
#include <errno.h>
#include <stdio.h>

#include "smtpd.h"

int
bounce_write(FILE *out, const struct bounce_info *bi,
    const struct bounce_rcpt *rcpts, size_t n, int msgfd, time_t now)
{
	(void)out; (void)bi; (void)rcpts; (void)n; (void)msgfd; (void)now;
	errno = ENOSYS;
	return -1;
}
