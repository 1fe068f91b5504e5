/*
 * testutil.h - helpers the unit tests that work in a scratch directory
 * share: bounded path formatting and the nftw() callback that removes
 * the directory at the end.  Include after smtpd.h.
 */
#ifndef TESTUTIL_H
#define TESTUTIL_H

#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>

static void mkpath(char *, size_t, const char *, ...)
    __attribute__((format(printf, 3, 4), unused));
static int rm_one(const char *, const struct stat *, int, struct FTW *)
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

#endif
