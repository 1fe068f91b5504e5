/*
 * queue_key.c - where the `queue encryption` key comes from, as OpenSMTPD
 * has it: the configuration, or standard input ("stdin" or "-"), or, with
 * no key given, the terminal through getpass(3).  Runs once in the parent
 * before it detaches (daemon(3) takes standard input away) and before any
 * role exists; the key then lives only in queue_crypt.c, and every role
 * but the queue wipes it after fork.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "smtpd.h"

/* getpass(3) needs a terminal; without one it would read stdin silently. */
static int
have_tty(void)
{
	int	 fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);

	if (fd == -1)
		return 0;
	close(fd);
	return 1;
}

/*
 * The first line of standard input, without its newline; NULL when there
 * is none.  read(2) a byte at a time: stdio would keep a copy of the key
 * in its buffer, and would take more of the input than the line.
 */
static char *
key_from_stdin(size_t *len)
{
	char	 buf[1024];
	size_t	 n = 0;
	ssize_t	 r = 0;
	char	*key = NULL;

	while (n < sizeof(buf) - 1) {
		if ((r = read(STDIN_FILENO, buf + n, 1)) == -1 &&
		    errno == EINTR)
			continue;
		if (r <= 0 || buf[n] == '\n')
			break;
		n++;
	}
	if (n > 0 || r == 1) {
		buf[n] = '\0';
		key = xstrdup(buf);
		*len = n;
	}
	explicit_bzero(buf, sizeof(buf));
	return key;
}

static char *
key_from_tty(size_t *len)
{
	char	*pass, *key;

	if ((pass = getpass("queue key: ")) == NULL)
		return NULL;
	key = xstrdup(pass);
	explicit_bzero(pass, strlen(pass));
	*len = strlen(key);
	return key;
}

static void
wipe(char *s, size_t len)
{
	if (s != NULL) {
		explicit_bzero(s, len);
		free(s);
	}
}

/* Obtains the key as the configuration says; NULL: logged. */
static char *
key_get(const struct config *conf, const char *where, size_t *len)
{
	char	*key;

	if (conf->queue_key == NULL) {
		if (!have_tty()) {
			log_warnx("%s: queue encryption has no key and there is "
			    "no terminal to ask for it: give the key after "
			    "`queue encryption`, or \"stdin\" to read it from "
			    "standard input", where);
			return NULL;
		}
		if ((key = key_from_tty(len)) == NULL)
			log_warnx("%s: cannot read the queue key from the "
			    "terminal: %s", where, strerror(errno));
		return key;
	}
	if (strcmp(conf->queue_key, "stdin") == 0) {
		if ((key = key_from_stdin(len)) == NULL)
			log_warnx("%s: queue encryption stdin: no key on "
			    "standard input", where);
		return key;
	}
	*len = strlen(conf->queue_key);
	return xstrdup(conf->queue_key);
}

static void
key_where(const struct config *conf, char *where, size_t len)
{
	snprintf(where, len, "%s:%d", conf->queue_key_file ?
	    conf->queue_key_file : "smtpd.conf", conf->queue_key_line);
}

int
queue_key_check(const struct config *conf)
{
	char	 where[PATH_MAX + 32];

	if (conf->queue_key == NULL ||
	    strcmp(conf->queue_key, QUEUE_KEY_HIDDEN) != 0)
		return 0;
	key_where(conf, where, sizeof(where));
	log_warnx("%s: queue encryption: \"%s\" stands for a key that "
	    "smtpd -n -v does not print: put the real key back", where,
	    QUEUE_KEY_HIDDEN);
	return -1;
}

int
queue_key_setup(struct config *conf)
{
	char	 where[PATH_MAX + 32];
	char	*key = NULL;
	size_t	 len = 0;
	int	 r = -1;

	if (!conf->queue_encryption)
		return 0;
	key_where(conf, where, sizeof(where));
	if (queue_key_check(conf) == 0 &&
	    (key = key_get(conf, where, &len)) != NULL) {
		if (qcrypt_set_key(key, len) == 0)
			r = 0;
		else
			log_warnx("%s: queue encryption key: expected %d "
			    "characters (as `openssl rand -hex 16` prints), got "
			    "%zu", where, QCRYPT_KEY_LEN, len);
	}
	wipe(key, len);
	/* The configuration's copy goes too: every role inherits it. */
	if (conf->queue_key != NULL)
		wipe(conf->queue_key, strlen(conf->queue_key));
	conf->queue_key = NULL;
	return r;
}
