/*
 * mailq.c - `mailq` / `sendmail -bp`: asks the daemon's control socket for
 * the queue ("show queue") and prints one entry per envelope.  The queue
 * lives in the queue role's memory and spool, which no user can read;
 * the control role answers root and the daemon's own user.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "smtpd.h"

#define MAILQ_FIELDS	9

/* The control socket: in the spool when the daemon is not root. */
static FILE *
mailq_connect(const char *spool)
{
	char	 path[PATH_MAX];
	FILE	*fp;
	int	 fd;

	if ((size_t)snprintf(path, sizeof(path), "%s/smtpd.sock", spool) >=
	    sizeof(path) || (fd = unix_connect(path)) == -1)
		fd = unix_connect("/run/smtpd.sock");
	if (fd == -1)
		return NULL;
	if ((fp = fdopen(fd, "r+")) == NULL)
		close(fd);
	return fp;
}

/* Splits a tab-separated line in place; the count of fields. */
static size_t
split_tabs(char *line, char **f, size_t max)
{
	size_t	 n = 0;

	while (n < max) {
		f[n++] = line;
		if ((line = strchr(line, '\t')) == NULL)
			break;
		*line++ = '\0';
	}
	return n;
}

static void
print_entry(char *line)
{
	char		*f[MAILQ_FIELDS], date[64];
	time_t		 t;
	struct tm	*tm;

	if (split_tabs(line, f, MAILQ_FIELDS) != MAILQ_FIELDS)
		return;
	t = strtoll(f[1], NULL, 10);
	if ((tm = localtime(&t)) == NULL ||
	    strftime(date, sizeof(date), "%a %b %e %H:%M:%S", tm) == 0)
		msd_strlcpy(date, "?", sizeof(date));
	printf("%s  %s  %s, %s retries\n", f[0], date, f[2], f[3]);
	printf("    from <%s>\n    to   <%s>", f[5], f[6]);
	if (strcmp(f[6], f[7]) != 0)
		printf(" (for <%s>)", f[7]);
	printf("\n");
	if (f[8][0] != '\0')
		printf("    last error: %s\n", f[8]);
}

int
mailq_run(const char *spool)
{
	FILE	*fp;
	char	*line = NULL;
	size_t	 cap = 0, n = 0;
	ssize_t	 len;

	if ((fp = mailq_connect(spool)) == NULL) {
		fprintf(stderr, "mailq: cannot reach smtpd's control socket"
		    " (%s/smtpd.sock or /run/smtpd.sock): is smtpd running?\n",
		    spool);
		return EX_UNAVAILABLE;
	}
	if (fputs("show queue\n", fp) == EOF || fflush(fp) == EOF) {
		fprintf(stderr, "mailq: control socket: %s\n", strerror(errno));
		fclose(fp);
		return EX_IOERR;
	}
	while ((len = getline(&line, &cap, fp)) != -1) {
		if (len > 0 && line[len - 1] == '\n')
			line[--len] = '\0';
		if (strcmp(line, ".") == 0)
			break;
		if (strchr(line, '\t') == NULL) {
			fprintf(stderr, "mailq: %s\n", line);
			free(line);
			fclose(fp);
			return EX_NOPERM;
		}
		print_entry(line);
		n++;
	}
	free(line);
	fclose(fp);
	if (len == -1) {
		fprintf(stderr, "mailq: the daemon closed the connection\n");
		return EX_IOERR;
	}
	if (n == 0)
		printf("Mail queue is empty\n");
	else
		printf("-- %zu envelope%s\n", n, n == 1 ? "" : "s");
	return EX_OK;
}
