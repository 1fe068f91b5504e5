/*
 * module.c - the module loader and the services the host gives modules.
 *
 * A module is found on the module path (config `module-path`, then
 * MODSMTPD_MODULE_PATH, then MODULEDIR), opened with libltdl as a local,
 * resident object, and accepted only if its descriptor passes the ABI
 * checks below.  From then on the host reads only its own zero-filled
 * copies of the descriptor and of the ops table, so it never reads past
 * the size a module declared: fields of a newer minor read as NULL/0.
 */
#include <sys/stat.h>

#include <errno.h>
#include <inttypes.h>
#include <ltdl.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "smtpd.h"

#ifndef MODULEDIR
#define MODULEDIR		"/usr/local/lib/modsmtpd/modules"
#endif

#define MODULE_MAX		16		/* module files per process */
#define MODULE_NAME_MAX		64		/* incl. NUL */
#define MODULE_RESULT_MAX	IPC_MAX_MSG	/* largest value kept */
#define NITEMS(a)		(sizeof(a) / sizeof((a)[0]))

/*
 * magic, abi_major, abi_minor and size sit at fixed offsets in every major,
 * so these 12 bytes are the only ones read before the size is known.
 */
#define DESC_HEADER_SIZE	(offsetof(struct msd_module, size) + \
				    sizeof(uint32_t))

/*
 * Size of each struct as minor N of this major defined it.  A module built
 * for minor N declares at least that much; the asserts make a minor bump
 * without a new row a build error.
 */
static const size_t desc_baseline[] = {
	offsetof(struct msd_module, description),	/* 1.0 */
	sizeof(struct msd_module),			/* 1.1 */
	sizeof(struct msd_module),			/* 1.2 */
	sizeof(struct msd_module),			/* 1.3 */
	sizeof(struct msd_module),			/* 1.4 */
};
static const size_t queue_baseline[] = {
	offsetof(struct msd_queue_ops, flush),		/* 1.0 */
	sizeof(struct msd_queue_ops),			/* 1.1 */
	sizeof(struct msd_queue_ops),			/* 1.2 */
	sizeof(struct msd_queue_ops),			/* 1.3 */
	sizeof(struct msd_queue_ops),			/* 1.4 */
};
static const size_t mda_baseline[] = {
	sizeof(struct msd_mda_ops),			/* 1.0 */
	sizeof(struct msd_mda_ops),			/* 1.1 */
	sizeof(struct msd_mda_ops),			/* 1.2 */
	sizeof(struct msd_mda_ops),			/* 1.3 */
	sizeof(struct msd_mda_ops),			/* 1.4 */
};
/* No table module exists before 1.3: such a module has no ops to read. */
static const size_t table_baseline[] = {
	0, 0, 0,					/* 1.0-1.2 */
	sizeof(struct msd_table_ops),			/* 1.3 */
	sizeof(struct msd_table_ops),			/* 1.4 */
};
/* Filters have ops from 1.4 on. */
static const size_t filter_baseline[] = {
	0, 0, 0, 0,					/* 1.0-1.3 */
	sizeof(struct msd_filter_ops),			/* 1.4 */
};
_Static_assert(NITEMS(desc_baseline) == MSD_ABI_MINOR + 1,
    "add the new minor's msd_module size to desc_baseline");
_Static_assert(NITEMS(queue_baseline) == MSD_ABI_MINOR + 1,
    "add the new minor's msd_queue_ops size to queue_baseline");
_Static_assert(NITEMS(mda_baseline) == MSD_ABI_MINOR + 1,
    "add the new minor's msd_mda_ops size to mda_baseline");
_Static_assert(NITEMS(table_baseline) == MSD_ABI_MINOR + 1,
    "add the new minor's msd_table_ops size to table_baseline");
_Static_assert(NITEMS(filter_baseline) == MSD_ABI_MINOR + 1,
    "add the new minor's msd_filter_ops size to filter_baseline");

/* Ops the host calls without checking: refused at load when NULL. */
struct op_req {
	size_t		 off;
	const char	*name;
};
#define OP_REQ(type, member)	{ offsetof(struct type, member), #member }

static const struct op_req queue_required[] = {
	OP_REQ(msd_queue_ops, open),
	OP_REQ(msd_queue_ops, message_create),
	OP_REQ(msd_queue_ops, message_commit),
	OP_REQ(msd_queue_ops, message_delete),
	OP_REQ(msd_queue_ops, message_fd_r),
	OP_REQ(msd_queue_ops, envelope_create),
	OP_REQ(msd_queue_ops, envelope_delete),
	OP_REQ(msd_queue_ops, envelope_update),
	OP_REQ(msd_queue_ops, envelope_load),
	OP_REQ(msd_queue_ops, envelope_walk),
	OP_REQ(msd_queue_ops, message_walk),
};
static const struct op_req mda_required[] = {
	OP_REQ(msd_mda_ops, deliver),
};
static const struct op_req table_required[] = {
	OP_REQ(msd_table_ops, open),
	OP_REQ(msd_table_ops, close),
};
static const struct op_req filter_required[] = {
	OP_REQ(msd_filter_ops, open),
};

struct kind_info {
	uint32_t		 kind;
	const char		*name;
	size_t			 opssize;	/* ours; 0: no ops table yet */
	const size_t		*opsbase;	/* per minor */
	const struct op_req	*required;
	size_t			 nrequired;
};

static const struct kind_info kinds[] = {
	{ MSD_KIND_TABLE, "table", sizeof(struct msd_table_ops),
	    table_baseline, table_required, NITEMS(table_required) },
	{ MSD_KIND_QUEUE, "queue", sizeof(struct msd_queue_ops),
	    queue_baseline, queue_required, NITEMS(queue_required) },
	{ MSD_KIND_MDA, "mda", sizeof(struct msd_mda_ops),
	    mda_baseline, mda_required, NITEMS(mda_required) },
	{ MSD_KIND_FILTER, "filter", sizeof(struct msd_filter_ops),
	    filter_baseline, filter_required, NITEMS(filter_required) },
};

/* The search path, in order, and its text for "not found" messages. */
static char		**mod_dirs;
static size_t		  mod_ndirs;
static char		 *mod_pathtext;
static char		 *mod_confpath;
static int		  mod_ready;

static struct module	*mod_loaded[MODULE_MAX];
static size_t		  mod_nloaded;

/* ------------------------------------------------------------ host: log */

/*
 * msd_host.log carries no module pointer, so each loaded module gets its
 * own host struct whose log member is a distinct trampoline: that is how a
 * line learns the module's name without the module passing it.
 */
static char		 slot_name[MODULE_MAX][MODULE_NAME_MAX];
static struct msd_host	 slot_host[MODULE_MAX];
static struct msd_host	 generic_host;

static int
level_to_syslog(int level)
{
	switch (level) {
	case MSD_LOG_ERR:
		return LOG_ERR;
	case MSD_LOG_INFO:
		return LOG_INFO;
	case MSD_LOG_DEBUG:
		return LOG_DEBUG;
	default:
		return LOG_WARNING;
	}
}

static void __attribute__((format(printf, 2, 3)))
host_logline(int pri, const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	log_vlog(pri, fmt, ap);
	va_end(ap);
}

/* Control characters would let a module forge or split log lines. */
static void
sanitize(char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			*s = ' ';
}

static void __attribute__((format(printf, 3, 0)))
host_vlog(const char *name, int level, const char *fmt, va_list ap)
{
	char	 buf[2048];
	int	 pri = level_to_syslog(level);

	if (pri == LOG_DEBUG && !log_verbose)
		return;
	if (fmt == NULL || vsnprintf(buf, sizeof(buf), fmt, ap) < 0)
		msd_strlcpy(buf, "(bad log format)", sizeof(buf));
	sanitize(buf);
	if (name != NULL)
		host_logline(pri, "module %s: %s", name, buf);
	else
		host_logline(pri, "module: %s", buf);
}

static void __attribute__((format(printf, 2, 3)))
host_log_any(int level, const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	host_vlog(NULL, level, fmt, ap);
	va_end(ap);
}

#define HOST_LOG_SLOT(n)						\
static void __attribute__((format(printf, 2, 3)))			\
host_log_##n(int level, const char *fmt, ...)				\
{									\
	va_list	 ap;							\
									\
	va_start(ap, fmt);						\
	host_vlog(slot_name[n], level, fmt, ap);			\
	va_end(ap);							\
}
HOST_LOG_SLOT(0)  HOST_LOG_SLOT(1)  HOST_LOG_SLOT(2)  HOST_LOG_SLOT(3)
HOST_LOG_SLOT(4)  HOST_LOG_SLOT(5)  HOST_LOG_SLOT(6)  HOST_LOG_SLOT(7)
HOST_LOG_SLOT(8)  HOST_LOG_SLOT(9)  HOST_LOG_SLOT(10) HOST_LOG_SLOT(11)
HOST_LOG_SLOT(12) HOST_LOG_SLOT(13) HOST_LOG_SLOT(14) HOST_LOG_SLOT(15)

typedef void host_log_fn(int, const char *, ...);
static host_log_fn *const slot_log[MODULE_MAX] = {
	host_log_0, host_log_1, host_log_2, host_log_3,
	host_log_4, host_log_5, host_log_6, host_log_7,
	host_log_8, host_log_9, host_log_10, host_log_11,
	host_log_12, host_log_13, host_log_14, host_log_15,
};

/* --------------------------------------------------------- host: config */

static const char *
host_config_get(const char *key)
{
	if (key == NULL)
		return NULL;
	if (strcmp(key, "hostname") == 0)
		return env.conf ? env.conf->hostname : NULL;
	if (strcmp(key, "spool") == 0)
		return env.spool[0] ? env.spool : NULL;
	/* The unprivileged user the roles run as; NULL when not root. */
	if (strcmp(key, "user") == 0)
		return geteuid() == 0 ? SMTPD_USER : NULL;
	/* What a blocking table may take for one answer (table_async.c). */
	if (strcmp(key, "table-timeout") == 0)
		return TABLE_TIMEOUT_STR;
	if (strcmp(key, "module-path") == 0) {
		if (env.conf && env.conf->module_path)
			return env.conf->module_path;
		return mod_confpath;
	}
	return NULL;
}

/* ---------------------------------------------------- host: event loop */

struct msd_timer {
	struct event	*ev;
	void		(*cb)(void *);
	void		*arg;
	int		 firing;
};

struct msd_io {
	struct event	*ev;
	void		(*cb)(int, uint32_t, void *);
	void		*arg;
};

/* One-shot: the handle is freed once the callback returns. */
static void
timer_fire(int fd, short what, void *arg)
{
	struct msd_timer	*t = arg;

	t->firing = 1;
	t->cb(t->arg);
	event_free(t->ev);
	free(t);
}

static msd_timer *
host_timer_add(uint32_t msec, void (*cb)(void *), void *arg)
{
	struct msd_timer	*t;
	struct timeval		 tv;

	if (env.evbase == NULL || cb == NULL)
		return NULL;
	t = xcalloc(1, sizeof(*t));
	t->cb = cb;
	t->arg = arg;
	tv.tv_sec = msec / 1000;
	tv.tv_usec = (msec % 1000) * 1000;
	if ((t->ev = evtimer_new(env.evbase, timer_fire, t)) == NULL ||
	    evtimer_add(t->ev, &tv) == -1) {
		if (t->ev)
			event_free(t->ev);
		free(t);
		return NULL;
	}
	return t;
}

static void
host_timer_del(msd_timer *t)
{
	/* Inside its own callback: timer_fire frees it on return. */
	if (t == NULL || t->firing)
		return;
	event_free(t->ev);
	free(t);
}

static void
io_fire(int fd, short what, void *arg)
{
	struct msd_io	*io = arg;
	uint32_t	 ev = 0;

	if (what & EV_READ)
		ev |= MSD_EV_READ;
	if (what & EV_WRITE)
		ev |= MSD_EV_WRITE;
	/* The callback may fd_unwatch(io): touch nothing after it. */
	io->cb(fd, ev, io->arg);
}

static msd_io *
host_fd_watch(int fd, uint32_t events, void (*cb)(int, uint32_t, void *),
    void *arg)
{
	struct msd_io	*io;
	short		 what = EV_PERSIST;

	if (env.evbase == NULL || cb == NULL || fd < 0 ||
	    events == 0 || (events & ~(MSD_EV_READ | MSD_EV_WRITE)))
		return NULL;
	if (events & MSD_EV_READ)
		what |= EV_READ;
	if (events & MSD_EV_WRITE)
		what |= EV_WRITE;
	io = xcalloc(1, sizeof(*io));
	io->cb = cb;
	io->arg = arg;
	if ((io->ev = event_new(env.evbase, fd, what, io_fire, io)) == NULL ||
	    event_add(io->ev, NULL) == -1) {
		if (io->ev)
			event_free(io->ev);
		free(io);
		return NULL;
	}
	return io;
}

static void
host_fd_unwatch(msd_io *io)
{
	if (io == NULL)
		return;
	event_free(io->ev);
	free(io);
}

/* ------------------------------------------------------- host: results */

void
result_reset(struct msd_result *r)
{
	free(r->value);
	memset(r, 0, sizeof(*r));
}

static void
host_result_error(msd_result *r, const char *msg)
{
	if (r == NULL)
		return;
	msd_strlcpy(r->error, msg ? msg : "unspecified module error",
	    sizeof(r->error));
	sanitize(r->error);
	r->failed = 1;
}

static void
host_result_set(msd_result *r, const char *buf, size_t len)
{
	if (r == NULL)
		return;
	free(r->value);
	r->value = NULL;
	r->len = 0;
	if (len > MODULE_RESULT_MAX || (buf == NULL && len > 0)) {
		host_result_error(r, "module result too large or invalid");
		return;
	}
	/* NUL-terminated as a courtesy: the JSON parsers want strings. */
	r->value = xmalloc(len + 1);
	if (len > 0)
		memcpy(r->value, buf, len);
	r->value[len] = '\0';
	r->len = len;
}

/* ------------------------------------------------------ host: envelope */

static const char *
env_field_id(const struct msd_envelope *me, uint32_t field)
{
	/* Host services run on one thread, so static buffers are safe. */
	static char	 id[24], msgid[12];

	if (field == MSD_ENV_ID) {
		if (me->idbuf[0] != '\0')
			return me->idbuf;
		snprintf(id, sizeof(id), "%016" PRIx64, me->ev->id);
		return id;
	}
	if (me->msgidbuf[0] != '\0')
		return me->msgidbuf;
	snprintf(msgid, sizeof(msgid), "%08" PRIx32, me->ev->msgid);
	return msgid;
}

static const char *
host_env_get(const msd_envelope *me, uint32_t field)
{
	if (me == NULL)
		return NULL;
	switch (field) {
	case MSD_ENV_USER:
		return me->user ? me->user : "";
	case MSD_ENV_HOMEDIR:
		return me->homedir ? me->homedir : "";
	case MSD_ENV_MDA_ARG:
		return me->mda_arg ? me->mda_arg : "";
	case MSD_ENV_MDA_JUNK:
		return me->junk ? "1" : "0";
	case MSD_ENV_MDA_RCPT:
		return me->mda_rcpt ? me->mda_rcpt : "";
	}
	if (me->ev == NULL)
		return NULL;
	switch (field) {
	case MSD_ENV_ID:
	case MSD_ENV_MSGID:
		return env_field_id(me, field);
	case MSD_ENV_SENDER:
		return me->ev->sender;
	case MSD_ENV_RCPT:
		return me->ev->rcpt;
	case MSD_ENV_DEST:
		return me->ev->dest;
	case MSD_ENV_HELO:
		return me->ev->helo;
	case MSD_ENV_SRC:
		return me->ev->src;
	case MSD_ENV_HOSTNAME:
		return me->ev->hostname;
	case MSD_ENV_CREATION: {
		static char	 buf[24];

		snprintf(buf, sizeof(buf), "%lld", (long long)me->ev->creation);
		return buf;
	}
	default:
		return NULL;	/* unknown field id */
	}
}

static const void *
host_query(const char *iface, uint32_t min_version)
{
	return NULL;	/* no named interfaces yet */
}

/* ------------------------------------------------------- host: filters */

/*
 * The filter services live in the daemon's lookup role (filter_module.c),
 * which this file, shared with makemap and the unit tests, cannot call
 * directly: the role hands them over with module_filter_services().
 */
static const struct module_filter_services *fsvc;

void
module_filter_services(const struct module_filter_services *s)
{
	fsvc = s;
}

static void
host_filter_register(msd_filter *self, uint64_t events, uint64_t phases)
{
	if (fsvc != NULL && self != NULL)
		fsvc->reg(self, events, phases);
}

static void
host_filter_result(msd_filter *self, uint64_t sid, uint64_t token,
    uint32_t verdict, const char *param)
{
	if (fsvc != NULL && self != NULL)
		fsvc->result(self, sid, token, verdict, param);
}

static void
host_filter_dataline(msd_filter *self, uint64_t sid, uint64_t token,
    const char *line, size_t len)
{
	if (fsvc != NULL && self != NULL && (line != NULL || len == 0))
		fsvc->dataline(self, sid, token, line ? line : "", len);
}

static void
host_filter_fail(msd_filter *self, const char *reason)
{
	if (fsvc != NULL && self != NULL)
		fsvc->fail(self, reason ? reason : "no reason given");
}

static void
host_fill(struct msd_host *h, host_log_fn *logfn)
{
	memset(h, 0, sizeof(*h));
	h->size = sizeof(*h);
	h->abi_major = MSD_ABI_MAJOR;
	h->abi_minor = MSD_ABI_MINOR;
	h->log = logfn;
	h->config_get = host_config_get;
	h->timer_add = host_timer_add;
	h->timer_del = host_timer_del;
	h->fd_watch = host_fd_watch;
	h->fd_unwatch = host_fd_unwatch;
	h->result_set = host_result_set;
	h->result_error = host_result_error;
	h->env_get = host_env_get;
	h->query = host_query;
	h->filter_register = host_filter_register;
	h->filter_result = host_filter_result;
	h->filter_dataline = host_filter_dataline;
	h->filter_fail = host_filter_fail;
	h->table_match = table_match_module;
}

const struct msd_host *
module_host(void)
{
	if (generic_host.size == 0)
		host_fill(&generic_host, host_log_any);
	return &generic_host;
}

/* ---------------------------------------------------------- search path */

const char *
module_kind_name(uint32_t kind)
{
	size_t	 i;

	for (i = 0; i < NITEMS(kinds); i++)
		if (kinds[i].kind == kind)
			return kinds[i].name;
	return "unknown";
}

static const struct kind_info *
kind_find(uint32_t kind)
{
	size_t	 i;

	for (i = 0; i < NITEMS(kinds); i++)
		if (kinds[i].kind == kind)
			return &kinds[i];
	return NULL;
}

static void
dirs_clear(void)
{
	size_t	 i;

	for (i = 0; i < mod_ndirs; i++)
		free(mod_dirs[i]);
	free(mod_dirs);
	free(mod_pathtext);
	mod_dirs = NULL;
	mod_ndirs = 0;
	mod_pathtext = NULL;
}

static void
dirs_add(const char *dir, size_t len)
{
	char	*d, *text;
	size_t	 i;

	d = xmalloc(len + 1);
	memcpy(d, dir, len);
	d[len] = '\0';
	/* A relative entry would depend on the daemon's cwd (and chroot). */
	if (d[0] != '/') {
		log_warnx("module path entry \"%s\" is not absolute, ignored",
		    d);
		free(d);
		return;
	}
	for (i = 0; i < mod_ndirs; i++)
		if (strcmp(mod_dirs[i], d) == 0) {
			free(d);
			return;
		}
	mod_dirs = xreallocarray(mod_dirs, mod_ndirs + 1, sizeof(*mod_dirs));
	mod_dirs[mod_ndirs++] = d;
	if (mod_pathtext == NULL)
		mod_pathtext = xstrdup(d);
	else {
		xasprintf(&text, "%s:%s", mod_pathtext, d);
		free(mod_pathtext);
		mod_pathtext = text;
	}
}

/* Adds each non-empty component of a colon-separated list. */
static void
dirs_add_list(const char *list)
{
	const char	*p, *colon;

	if (list == NULL)
		return;
	for (p = list; *p != '\0'; p = colon + 1) {
		if ((colon = strchr(p, ':')) == NULL)
			colon = p + strlen(p);
		if (colon > p)
			dirs_add(p, colon - p);
		if (*colon == '\0')
			break;
	}
}

void
module_init(const char *config_path)
{
	if (!mod_ready && lt_dlinit() != 0)
		fatalx("lt_dlinit: %s", lt_dlerror());
	mod_ready = 1;
	dirs_clear();
	dirs_add_list(config_path);
	dirs_add_list(getenv("MODSMTPD_MODULE_PATH"));
	dirs_add_list(MODULEDIR);
	if (mod_pathtext && lt_dlsetsearchpath(mod_pathtext) != 0)
		log_warnx("module path %s: %s", mod_pathtext, lt_dlerror());
	free(mod_confpath);
	mod_confpath = config_path ? xstrdup(config_path) : NULL;
}

/* Names become file names and libltdl symbol prefixes. */
static int
name_valid(const char *name)
{
	const char	*p;

	if (name == NULL || name[0] == '\0' || name[0] == '-' ||
	    strlen(name) >= MODULE_NAME_MAX)
		return 0;
	for (p = name; *p; p++)
		if (!(*p >= 'a' && *p <= 'z') && !(*p >= 'A' && *p <= 'Z') &&
		    !(*p >= '0' && *p <= '9') && *p != '_' && *p != '-')
			return 0;
	return 1;
}

/* Installed, flat directory, libtool build tree. */
#define LAYOUT_MAX	3

static int
candidate(char *buf, size_t size, const char *dir, int layout,
    const char *kind, const char *name)
{
	int	 n;

	if (layout == 0)
		n = snprintf(buf, size, "%s/%s/%s.so", dir, kind, name);
	else if (layout == 1)
		n = snprintf(buf, size, "%s/%s.so", dir, name);
	else
		n = snprintf(buf, size, "%s/%s/%s/.libs/%s.so", dir, kind,
		    name, name);
	return n >= 0 && (size_t)n < size;
}

static int
is_file(const char *path)
{
	struct stat	 st;

	return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/*
 * The file a module would be loaded from, without a word in the log: the
 * first match in the search path wins, later ones are only reported.
 */
int
module_find(uint32_t kind, const char *name, char *found, size_t len)
{
	char		 path[PATH_MAX];
	const char	*kname = module_kind_name(kind);
	size_t		 i;
	int		 l;

	if (!mod_ready)
		module_init(NULL);
	found[0] = '\0';
	if (kind_find(kind) == NULL || !name_valid(name))
		return -1;
	for (i = 0; i < mod_ndirs; i++) {
		for (l = 0; l < LAYOUT_MAX; l++) {
			if (!candidate(path, sizeof(path), mod_dirs[i], l,
			    kname, name) || !is_file(path))
				continue;
			if (found[0] == '\0')
				msd_strlcpy(found, path, len);
			else
				log_debug("module %s \"%s\": %s shadowed by %s",
				    kname, name, path, found);
		}
	}
	return found[0] != '\0' ? 0 : -1;
}

struct module *
module_load(uint32_t kind, const char *name)
{
	char		 found[PATH_MAX];
	const char	*kname = module_kind_name(kind);

	if (!mod_ready)
		module_init(NULL);
	if (kind_find(kind) == NULL || !name_valid(name)) {
		log_warnx("module %s \"%s\": invalid module kind or name",
		    kname, name ? name : "");
		return NULL;
	}
	if (module_find(kind, name, found, sizeof(found)) == -1) {
		log_warnx("module %s \"%s\" not found in %s", kname, name,
		    mod_pathtext ? mod_pathtext : "(empty module path)");
		return NULL;
	}
	return module_load_file(found, kind, name);
}

/* -------------------------------------------------------------- loading */

/* Anyone who can write the file can run code as the role that loads it. */
static int
file_check(const char *path)
{
	struct stat	 st;

	if (stat(path, &st) == -1) {
		log_warn("module %s", path);
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		log_warnx("module %s: not a regular file", path);
		return -1;
	}
	/* Unprivileged: a developer's own build tree, owned by them. */
	if (geteuid() != 0)
		return 0;
	if (st.st_uid != 0) {
		log_warnx("module %s: owned by uid %u, not root, refused",
		    path, (unsigned)st.st_uid);
		return -1;
	}
	if (st.st_mode & (S_IWGRP | S_IWOTH)) {
		log_warnx("module %s: writable by group or others "
		    "(mode %04o), refused", path, (unsigned)(st.st_mode & 07777));
		return -1;
	}
	return 0;
}

static lt_dlhandle
module_open(const char *path)
{
	lt_dladvise	 adv;
	lt_dlhandle	 h = NULL;

	if (lt_dladvise_init(&adv) != 0) {
		log_warnx("module %s: %s", path, lt_dlerror());
		return NULL;
	}
	/* Local: no symbol interposition; resident: callbacks stay mapped. */
	if (lt_dladvise_ext(&adv) == 0 && lt_dladvise_local(&adv) == 0 &&
	    lt_dladvise_resident(&adv) == 0)
		h = lt_dlopenadvise(path, adv);
	if (h == NULL)
		log_warnx("module %s: %s", path, lt_dlerror());
	lt_dladvise_destroy(&adv);
	return h;
}

/* Opens path and calls its entry; NULL (logged) when that fails. */
static const struct msd_module *
module_entry(const char *path)
{
	const struct msd_module	*d;
	lt_dlhandle		 h;
	msd_entry_fn		*entry;
	void			*sym;

	if ((h = module_open(path)) == NULL)
		return NULL;
	/* libltdl tries <name>_LTX_msd_module_entry first. */
	if ((sym = lt_dlsym(h, MSD_ENTRY_SYMBOL)) == NULL) {
		log_warnx("module %s: no %s entry point, not a modsmtpd "
		    "module", path, MSD_ENTRY_SYMBOL);
		return NULL;
	}
	entry = (msd_entry_fn *)sym;
	if ((d = entry(MSD_ABI_MAJOR, MSD_ABI_MINOR)) == NULL)
		log_warnx("module %s: declined to load, this host is %u.%u",
		    path, MSD_ABI_MAJOR, MSD_ABI_MINOR);
	return d;
}

/* The checks that need the module's own memory: header and versions. */
static int
desc_check(const char *path, const struct msd_module *d)
{
	uint16_t	 major = d->abi_major, minor = d->abi_minor;
	uint32_t	 size;

	if (d->magic != MSD_MAGIC) {
		log_warnx("module %s: bad magic 0x%08x, not a modsmtpd module",
		    path, (unsigned)d->magic);
		return -1;
	}
	size = d->size;
	if (major != MSD_ABI_MAJOR || minor > MSD_ABI_MINOR) {
		log_warnx("module %s: built for ABI %u.%u, this host is %u.%u",
		    path, major, minor, MSD_ABI_MAJOR, MSD_ABI_MINOR);
		return -1;
	}
	if (size < DESC_HEADER_SIZE || size < desc_baseline[minor]) {
		log_warnx("module %s: descriptor of %u bytes is too small for "
		    "ABI %u.%u (needs %zu), this host is %u.%u", path, size,
		    major, minor, desc_baseline[minor], MSD_ABI_MAJOR,
		    MSD_ABI_MINOR);
		return -1;
	}
	return 0;
}

/* The checks on our copy: layout, kind, name. */
static int
desc_accept(const struct module *m, uint32_t kind, const char *name)
{
	const struct msd_module	*d = &m->desc;
	uint32_t		 ours = MSD_MF_BUILD & MSD_MF_LAYOUT;
	const char		*dname = d->name ? d->name : "";

	if ((d->flags & MSD_MF_LAYOUT) != ours) {
		log_warnx("module %s: built for ABI %u.%u with layout flags "
		    "0x%x, this host is %u.%u with 0x%x", m->path,
		    d->abi_major, d->abi_minor,
		    (unsigned)(d->flags & MSD_MF_LAYOUT), MSD_ABI_MAJOR,
		    MSD_ABI_MINOR, (unsigned)ours);
		return -1;
	}
	if (kind != 0 && d->kind != kind) {
		log_warnx("module %s: is a %s module, expected %s (built for "
		    "ABI %u.%u, this host is %u.%u)", m->path,
		    module_kind_name(d->kind), module_kind_name(kind),
		    d->abi_major, d->abi_minor, MSD_ABI_MAJOR, MSD_ABI_MINOR);
		return -1;
	}
	if (strnlen(dname, MODULE_NAME_MAX) >= MODULE_NAME_MAX ||
	    !name_valid(dname) || (name != NULL && strcmp(dname, name) != 0)) {
		log_warnx("module %s: is named \"%.*s\", expected \"%s\" (built "
		    "for ABI %u.%u, this host is %u.%u)", m->path,
		    MODULE_NAME_MAX, dname, name ? name : "a valid name",
		    d->abi_major, d->abi_minor, MSD_ABI_MAJOR, MSD_ABI_MINOR);
		return -1;
	}
	return 0;
}

static int
op_present(const void *ops, size_t off)
{
	void	(*fn)(void);

	memcpy(&fn, (const char *)ops + off, sizeof(fn));
	return fn != NULL;
}

/* Copies the kind's ops table the way the descriptor was copied. */
static int
ops_copy(struct module *m)
{
	const struct kind_info	*k = kind_find(m->desc.kind);
	uint32_t		 declared;
	size_t			 i, need;

	if (k == NULL || k->opssize == 0)
		return 0;	/* no ops table defined for this kind yet */
	need = k->opsbase[m->desc.abi_minor];
	if (m->desc.ops == NULL) {
		log_warnx("module %s: no %s ops table (built for ABI %u.%u, "
		    "this host is %u.%u)", m->path, k->name,
		    m->desc.abi_major, m->desc.abi_minor, MSD_ABI_MAJOR,
		    MSD_ABI_MINOR);
		return -1;
	}
	memcpy(&declared, m->desc.ops, sizeof(declared));
	if (declared < need) {
		log_warnx("module %s: %s ops table of %u bytes is too small for "
		    "ABI %u.%u (needs %zu), this host is %u.%u", m->path,
		    k->name, declared, m->desc.abi_major, m->desc.abi_minor,
		    need, MSD_ABI_MAJOR, MSD_ABI_MINOR);
		return -1;
	}
	m->opslen = k->opssize;
	m->ops = xcalloc(1, m->opslen);
	memcpy(m->ops, m->desc.ops, declared < m->opslen ? declared : m->opslen);
	for (i = 0; i < k->nrequired; i++) {
		if (op_present(m->ops, k->required[i].off))
			continue;
		log_warnx("module %s: %s op %s missing (built for ABI %u.%u, "
		    "this host is %u.%u)", m->path, k->name,
		    k->required[i].name, m->desc.abi_major,
		    m->desc.abi_minor, MSD_ABI_MAJOR, MSD_ABI_MINOR);
		return -1;
	}
	return 0;
}

static struct module *
loaded_find(const char *path)
{
	size_t	 i;

	for (i = 0; i < mod_nloaded; i++)
		if (strcmp(mod_loaded[i]->path, path) == 0)
			return mod_loaded[i];
	return NULL;
}

/* Gives m its own host struct, so its log lines carry its name. */
static void
loaded_add(struct module *m)
{
	size_t	 n = mod_nloaded++;

	msd_strlcpy(slot_name[n], m->desc.name, sizeof(slot_name[n]));
	host_fill(&slot_host[n], slot_log[n]);
	m->host = &slot_host[n];
	mod_loaded[n] = m;
}

static void
module_free(struct module *m)
{
	free(m->ops);
	free(m);
}

struct module *
module_load_file(const char *path, uint32_t kind, const char *name)
{
	const struct msd_module	*d;
	struct module		*m;

	if (!mod_ready)
		module_init(NULL);
	if ((m = loaded_find(path)) != NULL)
		return desc_accept(m, kind, name) == 0 ? m : NULL;
	if (strlen(path) >= sizeof(m->path)) {
		log_warnx("module %s: path too long", path);
		return NULL;
	}
	if (mod_nloaded == MODULE_MAX) {
		log_warnx("module %s: more than %d modules in one process, "
		    "refused", path, MODULE_MAX);
		return NULL;
	}
	if (file_check(path) == -1 || (d = module_entry(path)) == NULL ||
	    desc_check(path, d) == -1)
		return NULL;
	m = xcalloc(1, sizeof(*m));
	msd_strlcpy(m->path, path, sizeof(m->path));
	/* Never past the declared size; newer fields stay zero. */
	memcpy(&m->desc, d, d->size < sizeof(m->desc) ? d->size :
	    sizeof(m->desc));
	if (desc_accept(m, kind, name) == -1 || ops_copy(m) == -1) {
		module_free(m);
		return NULL;
	}
	loaded_add(m);
	log_info("module %s: loaded %s module %s %.64s (ABI %u.%u)", path,
	    module_kind_name(m->desc.kind), m->desc.name,
	    m->desc.version ? m->desc.version : "", m->desc.abi_major,
	    m->desc.abi_minor);
	return m;
}

const void *
module_ops(const struct module *m, size_t oursize)
{
	if (m == NULL || m->ops == NULL || oursize > m->opslen)
		return NULL;
	return m->ops;
}
