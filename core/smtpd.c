/*
 * smtpd.c - main() and the parent role.
 *
 * The parent loads the configuration, reads the TLS certificates and keys
 * (smtp_tls.c) and binds the listening sockets while it is still root,
 * creates one socketpair per pair of roles that talk, and forks control,
 * smtp, lookup and queue.  It then stays root to run local
 * deliveries (mda.c).  If any role dies, the daemon goes down as a whole:
 * a half-working server (accepting mail that nothing will deliver) is worse
 * than a stopped one that a supervisor restarts.
 */
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "smtpd.h"

struct smtpd	 env;

static pid_t	 role_pid[ROLE_MAX];
static int	 shutting_down;

/* Which roles talk to which: each pair gets one socketpair. */
static const struct {
	enum smtpd_role	a, b;
} channels[] = {
	{ ROLE_PARENT, ROLE_CONTROL },
	{ ROLE_PARENT, ROLE_SMTP },
	{ ROLE_PARENT, ROLE_LOOKUP },
	{ ROLE_PARENT, ROLE_QUEUE },
	{ ROLE_SMTP, ROLE_LOOKUP },
	{ ROLE_SMTP, ROLE_QUEUE },
	{ ROLE_CONTROL, ROLE_QUEUE },
	{ ROLE_LOOKUP, ROLE_QUEUE },		/* bounce recipients */
};
#define NCHANNELS	(sizeof(channels) / sizeof(channels[0]))
static int	 chanfd[NCHANNELS][2];

static ipc_handler *const role_handler[ROLE_MAX] = {
	[ROLE_PARENT] = parent_imsg,
	[ROLE_CONTROL] = control_imsg,
	[ROLE_SMTP] = smtp_imsg,
	[ROLE_LOOKUP] = lookup_imsg,
	[ROLE_QUEUE] = queue_imsg,
};

const char *
role_name(enum smtpd_role r)
{
	static const char *names[ROLE_MAX] = {
		"parent", "control", "smtp", "lookup", "queue"
	};

	return r < ROLE_MAX ? names[r] : "unknown";
}

static void
usage(void)
{
	fprintf(stderr, "usage: smtpd [-dnv] [-D macro=value] [-f file]"
	    " [-s spooldir]\n");
	exit(1);
}

/* ------------------------------------------------------------ privileges */

void
role_drop_privileges(const char *user, const char *chrootdir)
{
	struct passwd	*pw;

	if (!env.privileged)
		return;
	if ((pw = getpwnam(user)) == NULL)
		fatalx("user %s does not exist", user);
	if (chrootdir) {
		if (chroot(chrootdir) == -1)
			fatal("chroot %s", chrootdir);
		if (chdir("/") == -1)
			fatal("chdir /");
	}
	if (setgroups(1, &pw->pw_gid) == -1 ||
	    setresgid(pw->pw_gid, pw->pw_gid, pw->pw_gid) == -1 ||
	    setresuid(pw->pw_uid, pw->pw_uid, pw->pw_uid) == -1)
		fatal("cannot drop privileges to %s", user);
}

static void
check_users(void)
{
	const char	*users[] = { SMTPD_USER, SMTPD_QUEUE_USER };
	struct stat	 sb;
	size_t		 i;

	for (i = 0; i < 2; i++)
		if (getpwnam(users[i]) == NULL) {
			fprintf(stderr, "smtpd: user %s does not exist: run"
			    " `make install` as root or `useradd --system %s`\n",
			    users[i], users[i]);
			exit(1);
		}
	if (stat(CHROOTDIR, &sb) == -1 || !S_ISDIR(sb.st_mode)) {
		fprintf(stderr, "smtpd: chroot directory %s is missing\n",
		    CHROOTDIR);
		exit(1);
	}
}

/*
 * Two daemons on one spool would each take the other's messages in
 * progress for orphans: the first one holds a lock for its lifetime (its
 * children share it, so it lasts until the last of them is gone).
 */
static int	 lock_fd = -1;

static void
lock_write_pid(void)
{
	char	 buf[32];
	int	 n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());

	if (ftruncate(lock_fd, 0) == -1 || pwrite(lock_fd, buf, n, 0) != n)
		log_warn("%s/smtpd.lock", env.spool);
}

static void
lock_spool(void)
{
	char	 path[PATH_MAX], buf[32];
	int	 fd, n;

	if ((size_t)snprintf(path, sizeof(path), "%s/smtpd.lock", env.spool) >=
	    sizeof(path))
		fatalx("spool path too long");
	if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) == -1)
		fatal("%s", path);
	if (flock(fd, LOCK_EX | LOCK_NB) == -1) {
		n = read(fd, buf, sizeof(buf) - 1);
		buf[n > 0 ? n : 0] = '\0';
		buf[strcspn(buf, "\n")] = '\0';
		fprintf(stderr, "smtpd: spool %s is in use by another smtpd"
		    " (pid %s)\n", env.spool, buf[0] ? buf : "unknown");
		exit(1);
	}
	/* Kept open on purpose: the lock lives as long as the daemon. */
	lock_fd = fd;
	lock_write_pid();
}

/* The queue role owns the spool; everyone else stays out of it. */
static void
setup_spool(void)
{
	struct passwd	*pw;

	if (mkdir_p(env.spool, 0711) == -1)
		fatal("spool %s", env.spool);
	if (!env.privileged)
		return;
	if ((pw = getpwnam(SMTPD_QUEUE_USER)) == NULL)
		fatalx("user %s does not exist", SMTPD_QUEUE_USER);
	/*
	 * 0711: local users reach submit.sock and offline/ by name; the
	 * queue's own directories inside stay 0700.
	 */
	if (chown(env.spool, pw->pw_uid, pw->pw_gid) == -1 ||
	    chmod(env.spool, 0711) == -1)
		fatal("spool %s", env.spool);
}

/*
 * <spool>/offline takes what sendmail writes while the daemon is down:
 * every local user may add files (sticky, like /tmp), and the parent
 * re-submits them as their owners once the daemon is up (offline.c).
 */
static void
setup_offline(void)
{
	char	 path[PATH_MAX];
	mode_t	 mode = env.privileged ? 01777 : 0700;

	if ((size_t)snprintf(path, sizeof(path), "%s/offline", env.spool) >=
	    sizeof(path))
		fatalx("spool path too long");
	if (mkdir(path, mode) == -1 && errno != EEXIST)
		fatal("%s", path);
	if (env.privileged && chown(path, 0, 0) == -1)
		fatal("%s", path);
	if (chmod(path, mode) == -1)
		fatal("%s", path);
}

/* ------------------------------------------------------------ listeners */

static void
bind_listeners(void)
{
	struct listener	*l;
	int		 one = 1, r;

	TAILQ_FOREACH(l, &env.conf->listeners, entry) {
		int fd = socket(l->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);

		if (fd == -1)
			fatal("socket");
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (l->ss.ss_family == AF_INET6)
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one,
			    sizeof(one));
		r = bind(fd, (struct sockaddr *)&l->ss, l->sslen);
		if (r == -1 && l->ss.ss_family == AF_INET6 &&
		    errno == EADDRNOTAVAIL) {
			/* `listen on localhost` on a host without IPv6. */
			log_warnx("smtpd: %s:%d: no IPv6 here, not listening"
			    " on %s", l->lc->file, l->lc->line,
			    ss_to_text(&l->ss));
			close(fd);
			continue;
		}
		if (r == -1)
			fatal("cannot listen on %s port %d",
			    ss_to_text(&l->ss),
			    ntohs(((struct sockaddr_in *)&l->ss)->sin_port));
		/* OpenSMTPD's backlog of 5 drops SYNs under load. */
		if (listen(fd, SOMAXCONN) == -1)
			fatal("listen");
		l->fd = fd;
	}
}

/*
 * Local submissions (sendmail, `listen on socket`): SMTP on
 * <spool>/submit.sock, open to every local user.  Sessions on it are
 * "local" for the rules.
 */
static void
bind_submit_socket(void)
{
	struct sockaddr_un	*sun;
	struct listener		*l;
	int			 fd;

	if (env.conf->socket_listener == NULL) {
		env.conf->socket_listener = xcalloc(1,
		    sizeof(*env.conf->socket_listener));
		env.conf->socket_listener->socket = 1;
	}
	l = xcalloc(1, sizeof(*l));
	l->lc = env.conf->socket_listener;
	sun = (struct sockaddr_un *)&l->ss;
	sun->sun_family = AF_UNIX;
	if ((size_t)snprintf(sun->sun_path, sizeof(sun->sun_path),
	    "%s/submit.sock", env.spool) >= sizeof(sun->sun_path))
		fatalx("spool path too long for %s/submit.sock", env.spool);
	l->sslen = sizeof(*sun);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		fatal("socket");
	/* The spool lock is ours: a socket left there is stale. */
	if (unlink(sun->sun_path) == -1 && errno != ENOENT)
		fatal("%s", sun->sun_path);
	if (bind(fd, (struct sockaddr *)sun, sizeof(*sun)) == -1 ||
	    chmod(sun->sun_path, 0666) == -1 || listen(fd, SOMAXCONN) == -1)
		fatal("%s", sun->sun_path);
	l->fd = fd;
	TAILQ_INSERT_TAIL(&env.conf->listeners, l, entry);
}

/* ---------------------------------------------------------------- roles */

static void
close_listeners(void)
{
	struct listener	*l;

	TAILQ_FOREACH(l, &env.conf->listeners, entry)
		if (l->fd != -1) {
			close(l->fd);
			l->fd = -1;
		}
}

/* Keeps the channel ends of role r, closes the others. */
static void
connect_role(enum smtpd_role r)
{
	size_t	 i;

	for (i = 0; i < NCHANNELS; i++) {
		enum smtpd_role peer;
		int	 mine;

		if (channels[i].a == r) {
			peer = channels[i].b;
			mine = 0;
		} else if (channels[i].b == r) {
			peer = channels[i].a;
			mine = 1;
		} else {
			close(chanfd[i][0]);
			close(chanfd[i][1]);
			continue;
		}
		close(chanfd[i][!mine]);
		env.peer[peer] = ipc_new(chanfd[i][mine], role_name(peer),
		    role_handler[r], (void *)(intptr_t)peer);
	}
}

static void
role_run(enum smtpd_role r)
{
	env.role = r;
	log_setproc(role_name(r));
	/* The comm name lets admins (and tests) tell the roles apart. */
	prctl(PR_SET_NAME, role_name(r), 0, 0, 0);
	if ((env.evbase = event_base_new()) == NULL)
		fatalx("event_base_new");
	signal(SIGPIPE, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	signal(SIGINT, SIG_IGN);
	signal(SIGTERM, SIG_DFL);
	signal(SIGCHLD, SIG_DFL);
	if (r != ROLE_SMTP) {
		close_listeners();
		smtp_tls_forget(env.conf);	/* keys stay with smtp only */
	}
	if (r != ROLE_QUEUE)
		qcrypt_forget();		/* the queue key with the queue */
	if (r != ROLE_CONTROL && control_fd != -1) {
		close(control_fd);
		control_fd = -1;
	}
	switch (r) {
	case ROLE_CONTROL:
		role_drop_privileges(SMTPD_USER, NULL);
		connect_role(r);
		control_main();
		break;
	case ROLE_SMTP:
		role_drop_privileges(SMTPD_USER, CHROOTDIR);
		connect_role(r);
		smtp_main();
		break;
	case ROLE_LOOKUP:
		role_drop_privileges(SMTPD_USER, NULL);
		connect_role(r);
		lookup_main();
		break;
	case ROLE_QUEUE:
		role_drop_privileges(SMTPD_QUEUE_USER, NULL);
		connect_role(r);
		queue_main();
		break;
	default:
		fatalx("role_run: bad role");
	}
	/* Also dies with a parent killed by SIGKILL; set after setuid. */
	prctl(PR_SET_PDEATHSIG, SIGTERM, 0, 0, 0);
	if (getppid() == 1)
		fatalx("parent went away");
	event_base_dispatch(env.evbase);
	fatalx("event loop exited");
}

static void
fork_roles(void)
{
	enum smtpd_role	 r;
	size_t		 i;

	for (i = 0; i < NCHANNELS; i++)
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0,
		    chanfd[i]) == -1)
			fatal("socketpair");
	for (r = ROLE_CONTROL; r < ROLE_MAX; r++) {
		switch (role_pid[r] = fork()) {
		case -1:
			fatal("fork");
		case 0:
			role_run(r);
			/* NOTREACHED */
		default:
			break;
		}
	}
	close_listeners();
	/* Delivery workers are forked from here: none may carry a key. */
	smtp_tls_forget(env.conf);
	qcrypt_forget();
	if (control_fd != -1) {
		close(control_fd);
		control_fd = -1;
	}
	connect_role(ROLE_PARENT);
}

/* -------------------------------------------------------- parent events */

#define SHUTDOWN_DELIVERY_WAIT	30	/* seconds for running deliveries */
#define SHUTDOWN_QUEUE_WAIT	10

/* Reaps children until none of `want` is left or the deadline passes. */
static void
reap_until(time_t deadline, int (*done)(void))
{
	sigset_t	 set;
	struct timespec	 ts = { 1, 0 };
	pid_t		 pid;
	int		 status;
	enum smtpd_role	 r;

	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigprocmask(SIG_BLOCK, &set, NULL);
	for (;;) {
		while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
			for (r = ROLE_CONTROL; r < ROLE_MAX; r++)
				if (role_pid[r] == pid)
					role_pid[r] = 0;
			if (!filter_exec_exited(pid, status))
				mda_child_exited(pid, status);
		}
		if (done() || time(NULL) >= deadline)
			return;
		/* Woken by the next SIGCHLD, or once a second. */
		sigtimedwait(&set, NULL, &ts);
	}
}

/* Roles that take new work are gone and running deliveries finished. */
static int
front_done(void)
{
	enum smtpd_role	 r;

	for (r = ROLE_CONTROL; r < ROLE_QUEUE; r++)
		if (role_pid[r] > 0)
			return 0;
	return mda_running() == 0;
}

static int
queue_done(void)
{
	return role_pid[ROLE_QUEUE] == 0;
}

/*
 * Orderly: stop taking mail, let running deliveries finish and report to
 * the queue, then tell the queue to exit after it has recorded them, so a
 * stop never causes a delivered message to be delivered again.
 */
static void
shutdown_roles(int code)
{
	enum smtpd_role	 r;

	if (shutting_down)
		return;
	shutting_down = 1;
	for (r = ROLE_CONTROL; r < ROLE_QUEUE; r++)
		if (role_pid[r] > 0)
			kill(role_pid[r], SIGTERM);
	mda_stop();
	filter_exec_stop();
	reap_until(time(NULL) + SHUTDOWN_DELIVERY_WAIT, front_done);
	if (role_pid[ROLE_QUEUE] > 0) {
		ipc_end(ipc_begin(env.peer[ROLE_QUEUE], IMSG_CTL_SHUTDOWN), -1);
		if (ipc_flush_sync(env.peer[ROLE_QUEUE]) == -1)
			kill(role_pid[ROLE_QUEUE], SIGTERM);
		reap_until(time(NULL) + SHUTDOWN_QUEUE_WAIT, queue_done);
	}
	for (r = ROLE_CONTROL; r < ROLE_MAX; r++)
		if (role_pid[r] > 0) {
			log_warnx("smtpd: %s process did not stop, killing it",
			    role_name(r));
			kill(role_pid[r], SIGKILL);
			waitpid(role_pid[r], NULL, 0);
		}
	if (mda_running())
		log_warnx("smtpd: %zu delivery workers still running at exit",
		    mda_running());
	log_info("smtpd: shutting down");
	exit(code);
}

static void
role_died(enum smtpd_role r, int status)
{
	role_pid[r] = 0;
	if (WIFSIGNALED(status))
		log_warnx("smtpd: %s process was killed by signal %d",
		    role_name(r), WTERMSIG(status));
	else
		log_warnx("smtpd: %s process exited with status %d",
		    role_name(r), WEXITSTATUS(status));
}

static void
on_sigchld(evutil_socket_t sig, short ev, void *arg)
{
	pid_t		 pid;
	int		 status, died = 0;
	enum smtpd_role	 r;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		for (r = ROLE_CONTROL; r < ROLE_MAX; r++)
			if (role_pid[r] == pid)
				break;
		if (r < ROLE_MAX) {
			role_died(r, status);
			died = 1;
		} else if (!filter_exec_exited(pid, status))
			mda_child_exited(pid, status);
	}
	if (died) {
		log_warnx("smtpd: a process died, shutting down");
		shutdown_roles(1);
	}
}

/* The lookup role's copies too (name NULL: every table). */
static void
tables_update_lookup(const char *name)
{
	struct ipc_out	*o;

	o = ipc_begin(env.peer[ROLE_LOOKUP], IMSG_LKA_UPDATE_TABLES);
	ipc_put_str(o, name);
	ipc_end(o, -1);
}

/*
 * `smtpctl update table NAME` through the control role: id, name.  The
 * answer is the parent's own update, which reads the same files; the
 * lookup role logs its own.
 */
static void
ctl_update_table(struct ipc_msg *m)
{
	struct ipc_out	*o;
	uint64_t	 id = ipc_get_u64(m);
	const char	*name = ipc_get_str(m);
	char		 answer[256];

	ipc_get_end(m);
	if (name == NULL)
		fatalx("parent: update of no table");
	if (config_table(env.conf, name) == NULL)
		snprintf(answer, sizeof(answer), "no table %.200s", name);
	else if (table_update_all(env.conf, name) != 0)
		snprintf(answer, sizeof(answer), "table %.200s kept its old"
		    " contents (see the log)", name);
	else
		snprintf(answer, sizeof(answer), "ok");
	tables_update_lookup(name);
	log_info("smtpd: update table %s: %s", name, answer);
	o = ipc_begin(env.peer[ROLE_CONTROL], IMSG_CTL_UPDATE_RESULT);
	ipc_put_u64(o, id);
	ipc_put_str(o, answer);
	ipc_end(o, -1);
}

/* Admins send HUP expecting a reload: never let it stop the server. */
static void
on_sighup(evutil_socket_t sig, short ev, void *arg)
{
	int	 failed;

	/*
	 * Tables are read again (the parent's, for delivery users, and the
	 * lookup role's); the rest of the configuration needs a restart.
	 */
	failed = table_update_all(env.conf, NULL);
	tables_update_lookup(NULL);
	log_info("smtpd: SIGHUP: tables read again%s; a change to the rest of"
	    " the configuration needs a restart", failed ? " (some kept their"
	    " old contents, see above)" : "");
}

static void
on_sigterm(evutil_socket_t sig, short ev, void *arg)
{
	log_info("smtpd: received signal %d", (int)sig);
	shutdown_roles(0);
}

void
parent_imsg(struct ipc *ipc, struct ipc_msg *m, void *arg)
{
	enum smtpd_role from = (enum smtpd_role)(intptr_t)arg;

	if (m->type == IMSG_NONE) {
		/* SIGCHLD reports the cause; this covers a closed socket. */
		if (!shutting_down) {
			log_warnx("smtpd: lost the %s process, shutting down",
			    role_name(from));
			shutdown_roles(1);
		}
		return;
	}
	if (from == ROLE_QUEUE && m->type == IMSG_MDA_DELIVER) {
		mda_deliver(m);
		return;
	}
	if (from == ROLE_CONTROL && m->type == IMSG_CTL_UPDATE_TABLE) {
		ctl_update_table(m);
		return;
	}
	if (from == ROLE_LOOKUP && m->type == IMSG_AUTH_SYSTEM) {
		auth_system(m);
		return;
	}
	if (from == ROLE_LOOKUP && m->type == IMSG_LKA_FORWARD) {
		forward_open(m);
		return;
	}
	if (from == ROLE_LOOKUP && m->type == IMSG_FILTER_RESTART) {
		filter_exec_restart(m);
		return;
	}
	fatalx("parent: unexpected %s from %s", ipc_type_name(m->type),
	    role_name(from));
}

static void
parent_run(void)
{
	struct event	*ev_chld, *ev_term, *ev_int, *ev_hup;

	if ((env.evbase = event_base_new()) == NULL)
		fatalx("event_base_new");
	ev_chld = evsignal_new(env.evbase, SIGCHLD, on_sigchld, NULL);
	ev_term = evsignal_new(env.evbase, SIGTERM, on_sigterm, NULL);
	ev_int = evsignal_new(env.evbase, SIGINT, on_sigterm, NULL);
	ev_hup = evsignal_new(env.evbase, SIGHUP, on_sighup, NULL);
	if (!ev_chld || !ev_term || !ev_int || !ev_hup)
		fatalx("evsignal_new");
	evsignal_add(ev_chld, NULL);
	evsignal_add(ev_term, NULL);
	evsignal_add(ev_int, NULL);
	evsignal_add(ev_hup, NULL);
	/* The signal events exist before fork: no SIGCHLD can be missed. */
	fork_roles();
	/* Filter programs are the parent's children, spawned after roles. */
	filter_exec_start();
	on_sigchld(SIGCHLD, 0, NULL);
	offline_enqueue();
	log_info("smtpd: " SMTPD_NAME " " PACKAGE_VERSION " starting,"
	    " spool %s", env.spool);
	event_base_dispatch(env.evbase);
	fatalx("parent: event loop exited");
}

/* ------------------------------------------------------------------ main */

/* Every session is a descriptor: use all the system allows us. */
static void
raise_fd_limit(void)
{
	struct rlimit	 rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1)
		return;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
			log_warn("smtpd: cannot raise the descriptor limit");
	}
}

static void
add_macro(struct macro **macros, size_t *n, char *arg)
{
	char	*eq = strchr(arg, '=');

	if (eq == NULL || eq == arg) {
		fprintf(stderr, "smtpd: -D needs macro=value\n");
		exit(1);
	}
	*eq = '\0';
	*macros = xreallocarray(*macros, *n + 1, sizeof(**macros));
	(*macros)[*n].name = arg;
	(*macros)[*n].value = eq + 1;
	(*n)++;
}

int
main(int argc, char *argv[])
{
	struct macro	*macros = NULL;
	size_t		 nmacros = 0;
	const char	*conffile = SYSCONFDIR "/smtpd.conf";
	const char	*spool = SPOOLDIR;
	int		 ch, check = 0, debug = 0, verbose = 0;

	while ((ch = getopt(argc, argv, "dD:f:ns:v")) != -1) {
		switch (ch) {
		case 'd':
			debug = 1;
			break;
		case 'D':
			add_macro(&macros, &nmacros, optarg);
			break;
		case 'f':
			conffile = optarg;
			break;
		case 'n':
			check = 1;
			break;
		case 's':
			spool = optarg;
			break;
		case 'v':
			verbose++;
			break;
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();

	log_init(1, verbose);
	if ((env.conf = config_load(conffile, macros, nmacros)) == NULL)
		exit(1);
	/* Table backends are modules: the search path comes first. */
	module_init(env.conf->module_path);
	if (table_open_all(env.conf) == -1)
		exit(1);
	if (filter_module_check(env.conf) == -1)
		exit(1);
	/*
	 * Certificates and keys are read now, as root and before the roles
	 * exist: the smtp role cannot open them from its chroot.
	 */
	if (smtp_tls_setup(env.conf) == -1)
		exit(1);
	if (check) {
		/* -n -v: the same configuration in the current grammar. */
		if (verbose)
			config_print(stdout, env.conf);
		if (queue_key_check(env.conf) == -1)
			exit(1);
		printf("configuration OK\n");
		exit(0);
	}
	/* Before daemon(3) takes standard input away; no role exists yet. */
	if (queue_key_setup(env.conf) == -1)
		exit(1);
	env.conffile = conffile;
	env.privileged = geteuid() == 0;
	if (msd_strlcpy(env.spool, spool, sizeof(env.spool)) >=
	    sizeof(env.spool))
		fatalx("spool path too long");
	if (env.spool[0] != '/') {
		char	 cwd[PATH_MAX], *p;

		if (getcwd(cwd, sizeof(cwd)) == NULL)
			fatal("getcwd");
		xasprintf(&p, "%s/%s", cwd, spool);
		if (msd_strlcpy(env.spool, p, sizeof(env.spool)) >=
		    sizeof(env.spool))
			fatalx("spool path too long");
		free(p);
	}
	if (env.privileged)
		check_users();
	if (TAILQ_EMPTY(&env.conf->listeners))
		log_warnx("smtpd: no listener configured");

	raise_fd_limit();
	if (mda_init() == -1)
		exit(1);
	setup_spool();
	lock_spool();
	if (control_socket_bind() == -1)
		log_warnx("smtpd: running without a control socket");
	bind_listeners();
	setup_offline();
	bind_submit_socket();
	if (!debug) {
		if (daemon(0, 0) == -1)
			fatal("daemon");
		log_init(0, verbose);
		lock_write_pid();
	}
	env.foreground = debug;
	parent_run();
	return 0;
}
