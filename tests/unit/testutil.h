/*
 * testutil.h - helpers the unit tests share: bounded path formatting and
 * the nftw() callback that removes a scratch directory, and checks of a
 * module's msd_result that say what they got.  Include after smtpd.h.
 */
#ifndef TESTUTIL_H
#define TESTUTIL_H

#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static void mkpath(char *, size_t, const char *, ...)
    __attribute__((format(printf, 3, 4), unused));
static int rm_one(const char *, const struct stat *, int, struct FTW *)
    __attribute__((unused));
static int value_is(const struct msd_result *, const char *)
    __attribute__((unused));
static int error_has(const struct msd_result *, const char *)
    __attribute__((unused));

/* snprintf that gives up on truncation: a cut path would test the wrong file. */
static void
mkpath(char *buf, size_t size, const char *fmt, ...)
{
	va_list	 ap;
	int	 n;

	va_start(ap, fmt);
	n = vsnprintf(buf, size, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= size)
		fatalx("path too long: %s", buf);
}

/* nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS) removes a scratch tree. */
static int
rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* The result carries want as its value; else prints what it has. */
static int
value_is(const struct msd_result *res, const char *want)
{
	if (res->value != NULL && strcmp(res->value, want) == 0)
		return 1;
	printf("# value \"%s\", want \"%s\"%s%s\n", res->value ? res->value :
	    "(null)", want, res->failed ? ", error: " : "",
	    res->failed ? res->error : "");
	return 0;
}

/* The result failed with an error that contains want. */
static int
error_has(const struct msd_result *res, const char *want)
{
	if (res->failed && strstr(res->error, want) != NULL)
		return 1;
	printf("# error \"%s\", want \"%s\"\n", res->failed ? res->error :
	    "(none)", want);
	return 0;
}

#endif
