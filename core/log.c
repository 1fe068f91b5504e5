/*
 * log.c - logging for every role: stderr in the foreground (-d), syslog
 * (mail facility) otherwise.  Lines carry no role prefix in syslog, so they
 * keep OpenSMTPD's shapes for existing log tools; debug lines need -v.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "smtpd.h"

int		 log_verbose;
static int	 log_foreground = 1;
static const char *log_procname = "parent";

void
log_init(int foreground, int verbose)
{
	log_foreground = foreground;
	log_verbose = verbose;
	if (!foreground)
		openlog("smtpd", LOG_PID | LOG_NDELAY, LOG_MAIL);
	tzset();
}

void
log_setproc(const char *name)
{
	log_procname = name;
}

void
log_vlog(int pri, const char *fmt, va_list ap)
{
	char	 buf[4096];
	int	 saved = errno;

	if (pri == LOG_DEBUG && !log_verbose)
		return;
	if (log_foreground) {
		/* One write per line so lines of several roles never mix. */
		int n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
		if (n < 0)
			return;
		if ((size_t)n > sizeof(buf) - 2)
			n = sizeof(buf) - 2;
		buf[n++] = '\n';
		if (write(STDERR_FILENO, buf, n) == -1) {
			/* nowhere left to report it */
		}
	} else
		vsyslog(pri, fmt, ap);
	errno = saved;
}

static void
log_pri(int pri, const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	log_vlog(pri, fmt, ap);
	va_end(ap);
}

static void
log_errno(int pri, int err, const char *fmt, va_list ap)
{
	char	 buf[2048];

	if (vsnprintf(buf, sizeof(buf), fmt, ap) < 0)
		buf[0] = '\0';
	if (err)
		log_pri(pri, "%s: %s", buf, strerror(err));
	else
		log_pri(pri, "%s", buf);
}

void
log_warn(const char *fmt, ...)
{
	va_list	 ap;
	int	 err = errno;

	va_start(ap, fmt);
	log_errno(LOG_WARNING, err, fmt, ap);
	va_end(ap);
	errno = err;
}

void
log_warnx(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	log_vlog(LOG_WARNING, fmt, ap);
	va_end(ap);
}

void
log_info(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	log_vlog(LOG_INFO, fmt, ap);
	va_end(ap);
}

void
log_debug(const char *fmt, ...)
{
	va_list	 ap;

	if (!log_verbose)
		return;
	va_start(ap, fmt);
	log_vlog(LOG_DEBUG, fmt, ap);
	va_end(ap);
}

void
fatal(const char *fmt, ...)
{
	va_list	 ap;
	int	 err = errno;
	char	 buf[2048];

	va_start(ap, fmt);
	if (vsnprintf(buf, sizeof(buf), fmt, ap) < 0)
		buf[0] = '\0';
	va_end(ap);
	log_pri(LOG_CRIT, "fatal in %s: %s: %s", log_procname, buf,
	    strerror(err));
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	va_list	 ap;
	char	 buf[2048];

	va_start(ap, fmt);
	if (vsnprintf(buf, sizeof(buf), fmt, ap) < 0)
		buf[0] = '\0';
	va_end(ap);
	log_pri(LOG_CRIT, "fatal in %s: %s", log_procname, buf);
	exit(1);
}
