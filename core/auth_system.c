/*
 * auth_system.c - `auth` without a table: the system's users, checked in
 * the parent (only root can read /etc/shadow or run PAM's pam_unix).
 *
 * Each check runs in a short-lived child of the parent, so a slow check
 * (a bcrypt or yescrypt hash, a PAM stack that asks the network, PAM's
 * own delay after a failure) never stalls the parent's event loop: the
 * child writes one status word into a pipe and exits.  A check that has
 * not answered within AUTH_CHILD_TIMEOUT is killed and answered
 * "temporary failure"; at most AUTH_CHILD_MAX run at once, beyond that
 * the answer is "temporary failure" too (the client gets a 4xx and may
 * try again).
 *
 * With PAM (configure found libpam) the check is pam_authenticate and
 * pam_acct_mgmt in the service `smtp pam-service` names, "smtpd" by
 * default; without it, the password hash of passwd or shadow through
 * crypt(3).
 */
#include <sys/types.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pwd.h>
#include <shadow.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#ifdef HAVE_PAM
#include <security/pam_appl.h>
#endif

#include "smtpd.h"

#define AUTH_CHILD_MAX		16	/* checks at once */
#define AUTH_CHILD_TIMEOUT	30	/* seconds for one check */
#define DEFAULT_PAM_SERVICE	"smtpd"

/* ------------------------------------------------------ in the child */

#ifdef HAVE_PAM
/* The one answer PAM asks for is the password; prompts get nothing. */
static int
pam_conv_password(int n, const struct pam_message **msg,
    struct pam_response **resp, void *arg)
{
	struct pam_response	*r;
	int			 i;

	if (n <= 0 || n > PAM_MAX_NUM_MSG)
		return PAM_CONV_ERR;
	if ((r = calloc(n, sizeof(*r))) == NULL)
		return PAM_BUF_ERR;
	for (i = 0; i < n; i++) {
		if (msg[i]->msg_style != PAM_PROMPT_ECHO_OFF)
			continue;
		if ((r[i].resp = strdup(arg)) == NULL) {
			while (i-- > 0)
				free(r[i].resp);
			free(r);
			return PAM_BUF_ERR;
		}
	}
	*resp = r;
	return PAM_SUCCESS;
}

/* The session delays a refusal itself, per client; PAM's would add up. */
static void
pam_no_delay(int status, unsigned int usec, void *arg)
{
}

static uint32_t
pam_status(int rc)
{
	switch (rc) {
	case PAM_SUCCESS:
		return LKA_OK;
	case PAM_AUTH_ERR:
	case PAM_USER_UNKNOWN:
	case PAM_MAXTRIES:
	case PAM_ACCT_EXPIRED:
	case PAM_NEW_AUTHTOK_REQD:
	case PAM_PERM_DENIED:
	case PAM_CRED_INSUFFICIENT:
		return LKA_REJECT;
	default:
		return LKA_TEMPFAIL;
	}
}

static uint32_t
system_check(const char *user, const char *pass)
{
	const char	*service = env.conf->pam_service ?
			    env.conf->pam_service : DEFAULT_PAM_SERVICE;
	struct pam_conv	 conv = { pam_conv_password, (void *)(uintptr_t)pass };
	pam_handle_t	*pamh = NULL;
	int		 rc;
	uint32_t	 status;

	if ((rc = pam_start(service, user, &conv, &pamh)) != PAM_SUCCESS) {
		log_warnx("auth: PAM service %s: %s", service,
		    pam_strerror(pamh, rc));
		return LKA_TEMPFAIL;
	}
	(void)pam_set_item(pamh, PAM_FAIL_DELAY, (const void *)pam_no_delay);
	rc = pam_authenticate(pamh, PAM_SILENT | PAM_DISALLOW_NULL_AUTHTOK);
	if (rc == PAM_SUCCESS)
		rc = pam_acct_mgmt(pamh, PAM_SILENT |
		    PAM_DISALLOW_NULL_AUTHTOK);
	if ((status = pam_status(rc)) == LKA_TEMPFAIL)
		log_warnx("auth: PAM service %s, user %s: %s", service, user,
		    pam_strerror(pamh, rc));
	pam_end(pamh, rc);
	return status;
}
#else
/* As root: /etc/shadow; otherwise only a hash in passwd can be checked. */
static uint32_t
system_check(const char *user, const char *pass)
{
	const struct spwd	*sp;
	const struct passwd	*pw;
	const char		*hash;
	int			 r;

	errno = 0;
	if ((pw = getpwnam(user)) == NULL)
		return errno == 0 || errno == ENOENT ? LKA_REJECT :
		    LKA_TEMPFAIL;
	hash = pw->pw_passwd;
	if (strcmp(hash, "x") == 0) {
		errno = 0;
		if ((sp = getspnam(user)) == NULL) {
			log_warnx("auth: no shadow entry for %s%s", user,
			    geteuid() != 0 ? " (not root: cannot read the"
			    " shadow file)" : "");
			return LKA_TEMPFAIL;
		}
		hash = sp->sp_pwdp;
	}
	if ((r = password_check(pass, hash)) == -1) {
		log_warnx("auth: the password hash of %s is of an unknown"
		    " scheme", user);
		return LKA_TEMPFAIL;
	}
	return r ? LKA_OK : LKA_REJECT;
}
#endif

static void __attribute__((noreturn))
child_run(int fd, const char *user, const char *pass)
{
	uint32_t	 status;

	/* The parent's libevent handlers must not run in here. */
	signal(SIGCHLD, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	signal(SIGHUP, SIG_DFL);
	status = system_check(user, pass);
	if (write(fd, &status, sizeof(status)) != sizeof(status))
		_exit(1);
	_exit(0);
}

/* ----------------------------------------------------- in the parent */

struct auth_child {
	uint64_t	 id;		/* the lookup role's request */
	pid_t		 pid;
	int		 fd;
	struct event	*ev;
};

static size_t	 nchildren;

static void
reply(uint64_t id, uint32_t status)
{
	struct ipc_out	*o;

	o = ipc_begin(env.peer[ROLE_LOOKUP], IMSG_AUTH_SYSTEM_RESULT);
	ipc_put_u64(o, id);
	ipc_put_u32(o, status);
	ipc_end(o, -1);
}

/* The status word, EOF (a crashed check) or the timeout. */
static void
child_done(evutil_socket_t fd, short what, void *arg)
{
	struct auth_child	*c = arg;
	uint32_t		 status = LKA_TEMPFAIL, got;
	ssize_t			 n;

	if (what & EV_TIMEOUT) {
		/* The pipe is open, so the child was not reaped yet. */
		log_warnx("auth: the check of a system user took more than"
		    " %d seconds, stopped", AUTH_CHILD_TIMEOUT);
		kill(c->pid, SIGKILL);
	} else {
		while ((n = read(fd, &got, sizeof(got))) == -1 &&
		    errno == EINTR)
			;
		if (n == sizeof(got) && got <= LKA_TEMPFAIL)
			status = got;
		else
			log_warnx("auth: the check of a system user failed"
			    " without an answer");
	}
	reply(c->id, status);
	event_free(c->ev);
	close(c->fd);
	free(c);
	nchildren--;
}

/* Parent: IMSG_AUTH_SYSTEM from lookup: id, user, password. */
void
auth_system(struct ipc_msg *m)
{
	struct timeval		 tv = { AUTH_CHILD_TIMEOUT, 0 };
	struct auth_child	*c;
	uint64_t		 id = ipc_get_u64(m);
	const char		*user = ipc_get_str(m);
	const char		*pass = ipc_get_str(m);
	int			 fds[2] = { -1, -1 };
	pid_t			 pid;

	ipc_get_end(m);
	if (user == NULL || pass == NULL)
		fatalx("auth: missing credentials");
	if (nchildren >= AUTH_CHILD_MAX) {
		log_warnx("auth: %d checks of system users already running,"
		    " refusing one for now", AUTH_CHILD_MAX);
		explicit_bzero((void *)(uintptr_t)pass, strlen(pass));
		reply(id, LKA_TEMPFAIL);
		return;
	}
	if (pipe2(fds, O_CLOEXEC) == -1 || (pid = fork()) == -1) {
		log_warn("auth: cannot start a check");
		if (fds[0] != -1) {
			close(fds[0]);
			close(fds[1]);
		}
		explicit_bzero((void *)(uintptr_t)pass, strlen(pass));
		reply(id, LKA_TEMPFAIL);
		return;
	}
	if (pid == 0) {
		close(fds[0]);
		child_run(fds[1], user, pass);
	}
	explicit_bzero((void *)(uintptr_t)pass, strlen(pass));
	close(fds[1]);
	c = xcalloc(1, sizeof(*c));
	c->id = id;
	c->pid = pid;
	c->fd = fds[0];
	if ((c->ev = event_new(env.evbase, c->fd, EV_READ, child_done, c)) ==
	    NULL)
		fatalx("auth: event_new");
	event_add(c->ev, &tv);
	nchildren++;
}
