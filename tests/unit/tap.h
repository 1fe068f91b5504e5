/*
 * tap.h - the few lines of TAP every unit test prints: "ok N - what" or
 * "not ok N - what", a plan at the end, exit status 1 on any failure.
 * Also defines the global the core files expect to find.
 */
#ifndef TAP_H
#define TAP_H

#include <stdarg.h>
#include <stdio.h>

struct smtpd	 env;
static int	 ntests, nfailed;

static void ok(int, const char *, ...) __attribute__((format(printf, 2, 3)));
static void skip(const char *) __attribute__((unused));

static void
ok(int cond, const char *fmt, ...)
{
	va_list	 ap;

	printf("%sok %d - ", cond ? "" : "not ", ++ntests);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	if (!cond)
		nfailed++;
}

static void
skip(const char *what)
{
	printf("ok %d - # skip %s\n", ++ntests, what);
}

/* The plan line, then main's exit status. */
static int
tap_done(void)
{
	printf("1..%d\n", ntests);
	return nfailed ? 1 : 0;
}

#endif
