/*
 * mda_worker.c - a delivery worker: a process forked by the parent that
 * runs as one recipient user and delivers, one after the other, the
 * messages the parent sends it, through one delivery-method module.
 *
 * It replaces a fork per message: the worker keeps its process, its
 * privileges and its initialised module across deliveries.  It trusts the
 * parent (malformed frames are fatal), but the parent does not trust it:
 * results go back as short text lines on a pipe that the parent parses
 * strictly, since the user it runs as could tamper with the process.
 */
#include <sys/prctl.h>

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "smtpd.h"

#define WORK_FD		3
#define RESULT_FD	4

static struct module		*wmod;
static struct userinfo		 wui;

/* "<evpid> <O|T|P><text>\n"; text on one line, bounded. */
static void
report(uint64_t evpid, char status, const char *text)
{
	char	 buf[MDA_RESULT_MAX];
	size_t	 i;
	int	 n;

	n = snprintf(buf, sizeof(buf) - 1, "%016" PRIx64 " %c%s", evpid,
	    status, text);
	if (n < 0)
		fatalx("delivery: result format");
	if ((size_t)n > sizeof(buf) - 2)
		n = sizeof(buf) - 2;
	for (i = 18; i < (size_t)n; i++)
		if (buf[i] == '\n' || buf[i] == '\r')
			buf[i] = ' ';
	buf[n++] = '\n';
	if (write(RESULT_FD, buf, n) != n)
		fatal("delivery: cannot report to the parent");
}

static void
work(struct ipc_msg *m)
{
	const struct msd_mda_ops *ops = module_ops(wmod, sizeof(*ops));
	struct msd_envelope	 menv;
	struct msd_result	 res;
	struct envelope		 ev;
	const char		*json, *path, *rcpt;
	uint64_t		 evpid;
	uint32_t		 junk;
	int			 r;

	evpid = ipc_get_u64(m);
	json = ipc_get_str(m);
	path = ipc_get_str(m);
	rcpt = ipc_get_str(m);
	junk = ipc_get_u32(m);
	ipc_get_end(m);
	if (m->fd == -1 || json == NULL || path == NULL ||
	    envelope_load_json(&ev, json, strlen(json)) == -1)
		fatalx("delivery: bad work from the parent");
	ev.id = evpid;
	memset(&menv, 0, sizeof(menv));
	menv.ev = &ev;
	menv.user = wui.name;
	menv.homedir = wui.home;
	menv.mda_arg = path;
	menv.mda_rcpt = rcpt;
	menv.junk = junk;
	memset(&res, 0, sizeof(res));
	r = ops->deliver(wmod->host, m->fd, &menv, &res);
	close(m->fd);
	if (r == MSD_OK)
		report(evpid, 'O', "Delivered");
	else
		report(evpid, r == MSD_PERMFAIL ? 'P' : 'T',
		    res.failed ? res.error : "delivery failed");
	result_reset(&res);
}

static void
worker_imsg(struct ipc *ipc, struct ipc_msg *m, void *arg)
{
	/* The parent closes the channel when it no longer needs us. */
	if (m->type == IMSG_NONE)
		exit(0);
	if (m->type != IMSG_MDA_WORK)
		fatalx("delivery: unexpected %s", ipc_type_name(m->type));
	work(m);
}

/*
 * Keeps only the two channels: everything else the parent holds (the
 * sockets to the other roles above all) must not be reachable by a
 * process that runs as an ordinary user.
 */
static void
close_inherited(int workfd, int resfd)
{
	if (dup2(workfd, WORK_FD) == -1 || dup2(resfd, RESULT_FD) == -1)
		fatal("delivery: dup2");
	if (close_range(RESULT_FD + 1, ~0U, 0) == -1)
		fatal("delivery: close_range");
}

void
mda_worker_run(struct module *mod, const struct userinfo *ui,
    const gid_t *groups, int ngroups, int workfd, int resfd)
{
	signal(SIGCHLD, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	signal(SIGHUP, SIG_DFL);
	signal(SIGPIPE, SIG_IGN);
	/* A file size limit must fail the write (and be rolled back), not
	 * kill the worker in the middle of an mbox append. */
	signal(SIGXFSZ, SIG_IGN);
	close_inherited(workfd, resfd);
	log_setproc("delivery");
	prctl(PR_SET_NAME, "delivery", 0, 0, 0);
	if (env.privileged &&
	    (setgroups(ngroups, groups) == -1 ||
	    setresgid(ui->gid, ui->gid, ui->gid) == -1 ||
	    setresuid(ui->uid, ui->uid, ui->uid) == -1))
		fatal("delivery: cannot switch to user %s", ui->name);
	prctl(PR_SET_PDEATHSIG, SIGTERM, 0, 0, 0);
	if (getppid() == 1)
		exit(0);
	if (chdir(ui->home) == -1 && chdir("/") == -1)
		fatal("delivery: chdir");
	wmod = mod;
	wui = *ui;
	if ((env.evbase = event_base_new()) == NULL)
		fatalx("delivery: event_base_new");
	if (mod->desc.init && mod->desc.init(mod->host) != MSD_OK)
		fatalx("delivery: method %s failed to start", mod->desc.name);
	(void)ipc_new(WORK_FD, "parent", worker_imsg, NULL);
	event_base_dispatch(env.evbase);
	exit(0);
}
