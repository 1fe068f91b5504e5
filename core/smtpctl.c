/*
 * smtpctl.c - the administrator's tool, as OpenSMTPD's smtpctl(8) for the
 * commands the daemon serves so far:
 *
 *	smtpctl encrypt [string]	a password hash for credentials tables
 *	smtpctl show queue		the queue, as mailq prints it
 *	smtpctl update table name	reads a table again
 *
 * It talks to the control socket (<spool>/smtpd.sock for a daemon run
 * unprivileged, /run/smtpd.sock for root's).
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "smtpd.h"

static void __attribute__((noreturn))
usage(void)
{
	fprintf(stderr, "usage: smtpctl encrypt [string]\n"
	    "       smtpctl show queue\n"
	    "       smtpctl update table name\n");
	exit(EX_USAGE);
}

static int
encrypt_one(const char *pass)
{
	char	*hash;

	if ((hash = password_hash(pass)) == NULL) {
		fprintf(stderr, "smtpctl: cannot hash the password\n");
		return EX_SOFTWARE;
	}
	printf("%s\n", hash);
	free(hash);
	return EX_OK;
}

/* One hash per argument, or per line of standard input. */
static int
cmd_encrypt(int argc, char **argv)
{
	char	*line = NULL;
	size_t	 cap = 0;
	ssize_t	 len;
	int	 r = EX_OK;

	if (argc > 1)
		usage();
	if (argc == 1)
		return encrypt_one(argv[0]);
	while (r == EX_OK && (len = getline(&line, &cap, stdin)) != -1) {
		if (len > 0 && line[len - 1] == '\n')
			line[--len] = '\0';
		r = encrypt_one(line);
		explicit_bzero(line, len);
	}
	free(line);
	return r;
}

/* Sends one command line; prints the one-line answer; "ok" is success. */
static int
control_command(const char *cmd)
{
	char	 path[PATH_MAX], answer[512];
	FILE	*fp;
	int	 fd;

	if ((size_t)snprintf(path, sizeof(path), "%s/smtpd.sock",
	    default_spool()) >= sizeof(path) || (fd = unix_connect(path)) == -1)
		fd = unix_connect("/run/smtpd.sock");
	if (fd == -1 || (fp = fdopen(fd, "r+")) == NULL) {
		fprintf(stderr, "smtpctl: cannot reach smtpd's control socket"
		    " (%s/smtpd.sock or /run/smtpd.sock): is smtpd running?\n",
		    default_spool());
		if (fd != -1)
			close(fd);
		return EX_UNAVAILABLE;
	}
	if (fprintf(fp, "%s\n", cmd) < 0 || fflush(fp) == EOF ||
	    fgets(answer, sizeof(answer), fp) == NULL) {
		fprintf(stderr, "smtpctl: control socket: %s\n",
		    ferror(fp) ? strerror(errno) : "closed by the daemon");
		fclose(fp);
		return EX_IOERR;
	}
	fclose(fp);
	answer[strcspn(answer, "\n")] = '\0';
	if (strcmp(answer, "ok") == 0)
		return EX_OK;
	fprintf(stderr, "smtpctl: %s\n", answer);
	return strstr(answer, "permission") ? EX_NOPERM : EX_DATAERR;
}

static int
cmd_update_table(const char *name)
{
	char	 cmd[256];

	if (name[0] == '\0' || strpbrk(name, " \t\r\n") != NULL ||
	    (size_t)snprintf(cmd, sizeof(cmd), "update table %s", name) >=
	    sizeof(cmd)) {
		fprintf(stderr, "smtpctl: bad table name \"%s\"\n", name);
		return EX_USAGE;
	}
	return control_command(cmd);
}

int
main(int argc, char **argv)
{
	log_init(1, 0);
	if (argc < 2)
		usage();
	if (strcmp(argv[1], "encrypt") == 0)
		return cmd_encrypt(argc - 2, argv + 2);
	if (argc == 3 && strcmp(argv[1], "show") == 0 &&
	    strcmp(argv[2], "queue") == 0)
		return mailq_run(default_spool());
	if (argc == 4 && strcmp(argv[1], "update") == 0 &&
	    strcmp(argv[2], "table") == 0)
		return cmd_update_table(argv[3]);
	usage();
}
