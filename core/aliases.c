/*
 * aliases.c - recipient expansion in the lookup role: the rule for the
 * recipient, then `virtual` and `alias` tables, then the users' ~/.forward
 * files, until every branch ends in a delivery (a local user, a file, a
 * command, or an address routed by another rule).
 *
 * An expansion may wait for the parent, which alone can open a user's
 * .forward; it is a small state machine that resumes when the answer
 * comes.  Every RCPT, and every bounce the queue sends, goes through it.
 */
#include <sys/socket.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "smtpd.h"

#define XP_DEPTH_MAX	10		/* nested aliases, .forward, rules */
#define XP_NODES_MAX	4096		/* nodes expanded for one recipient */
#define XP_RESULTS_MAX	1000		/* deliveries for one recipient */
#define FORWARD_MAX	(64 * 1024)	/* bytes of a .forward read */
#define ALIAS_USER	"nobody"	/* runs alias |commands and /files */
#define VALUE_MAX	(64 * 1024)	/* one alias or virtual entry */

enum xkind {
	X_ADDRESS,		/* route through the rules again */
	X_USER,			/* local user: alias, .forward, mailbox */
	X_MAILBOX,		/* local user, no further expansion */
	X_FILE,			/* append to a file */
	X_COMMAND,		/* pipe into a command */
	X_INCLUDE,		/* :include:/path, read as alias entries */
};

struct xnode {
	struct xnode		*next;
	enum xkind		 kind;
	char			*value;
	const struct action	*action;
	char			 domain[SMTPD_MAXADDR];	/* for dest */
	char			 addr[SMTPD_MAXADDR];	/* reached as */
	char			*runas;		/* files and commands */
	int			 depth;
	int			 user_known;	/* looked up for its .forward */
	int			 srs_seen;	/* SRS decoding tried (once) */
};

struct expansion {
	struct expansion	*next;
	uint64_t		 id;		/* our key for the parent */
	uint64_t		 reqid;		/* the requester's key */
	enum smtpd_role		 from;
	/* the match context, owned */
	int			 local;
	struct sockaddr_storage	 ss;
	char			*tag, *helo, *auth, *sender, *rcpt, *rdns;
	int			 tls;
	struct xnode		*todo;		/* stack */
	struct xnode		*seen;		/* expanded, for loops */
	size_t			 nnodes;
	struct xresult		*res;
	size_t			 nres;
	size_t			 rescap;
	struct xnode		*waiting;	/* for its .forward */
	struct table_cache	*cache;		/* answers of worker tables */
	uint32_t		 status;	/* LKA_* once failed */
	char			 error[256];	/* the reply then */
};

static struct expansion	*expansions;
static uint64_t		 next_id;

static void	xp_run(struct expansion *);

/* --------------------------------------------------------------- nodes */

static void
xnode_free(struct xnode *n)
{
	free(n->value);
	free(n->runas);
	free(n);
}

static void
xlist_free(struct xnode *n)
{
	struct xnode	*next;

	for (; n; n = next) {
		next = n->next;
		xnode_free(n);
	}
}

static void
xp_fail(struct expansion *x, uint32_t status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
xp_fail(struct expansion *x, uint32_t status, const char *fmt, ...)
{
	va_list	 ap;

	if (x->status != LKA_OK)
		return;		/* the first reason is the one reported */
	x->status = status;
	va_start(ap, fmt);
	vsnprintf(x->error, sizeof(x->error), fmt, ap);
	va_end(ap);
}

static int
xnode_same(const struct xnode *a, const struct xnode *b)
{
	return a->kind == b->kind && a->action == b->action &&
	    strcmp(a->value, b->value) == 0 &&
	    ((a->runas == NULL && b->runas == NULL) || (a->runas && b->runas &&
	    strcmp(a->runas, b->runas) == 0));
}

/* Queues a node unless the same one was expanded already (loops). */
static void
xp_push(struct expansion *x, const struct xnode *parent, enum xkind kind,
    const char *value, const struct action *a, const char *runas)
{
	struct xnode	*n, *s;

	n = xcalloc(1, sizeof(*n));
	n->kind = kind;
	n->value = xstrdup(value);
	n->action = a;
	n->runas = runas ? xstrdup(runas) : NULL;
	n->depth = parent ? parent->depth + 1 : 0;
	if (parent)
		msd_strlcpy(n->domain, parent->domain, sizeof(n->domain));
	for (s = x->seen; s; s = s->next) {
		if (!xnode_same(s, n))
			continue;
		/*
		 * A user reached again through its own aliases or .forward
		 * ("root: root, admin") means that user's mailbox; anything
		 * else seen twice is delivered once.
		 */
		if (n->kind != X_USER) {
			xnode_free(n);
			return;
		}
		n->kind = X_MAILBOX;
		break;
	}
	if (n->depth > XP_DEPTH_MAX || ++x->nnodes > XP_NODES_MAX) {
		xnode_free(n);
		xp_fail(x, LKA_REJECT, "550 5.4.6 Routing loop detected:"
		    " Loop detected");
		return;
	}
	n->next = x->todo;
	x->todo = n;
}

/* ------------------------------------------------------------- results */

static void
xp_result(struct expansion *x, const struct xnode *n, const struct action *a,
    const char *dest, const char *user, uint32_t dlv, const char *arg)
{
	struct xresult	*r;
	size_t		 i;

	for (i = 0; i < x->nres; i++) {
		r = &x->res[i];
		if (strcmp(r->action, a->name) == 0 && strcmp(r->dest, dest) ==
		    0 && strcmp(r->user, user) == 0 && r->dlv == dlv &&
		    strcmp(r->dlv_arg, arg) == 0)
			return;
	}
	if (x->nres == XP_RESULTS_MAX) {
		xp_fail(x, LKA_REJECT, "550 5.5.3 Too many recipients after"
		    " expansion");
		return;
	}
	if (x->nres == x->rescap) {
		x->rescap = x->rescap ? x->rescap * 2 : 4;
		x->res = xreallocarray(x->res, x->rescap, sizeof(*x->res));
	}
	r = &x->res[x->nres++];
	memset(r, 0, sizeof(*r));
	if (msd_strlcpy(r->action, a->name, sizeof(r->action)) >=
	    sizeof(r->action) || msd_strlcpy(r->dest, dest, sizeof(r->dest)) >=
	    sizeof(r->dest) || msd_strlcpy(r->user, user, sizeof(r->user)) >=
	    sizeof(r->user) || msd_strlcpy(r->dlv_arg, arg,
	    sizeof(r->dlv_arg)) >= sizeof(r->dlv_arg))
		xp_fail(x, LKA_REJECT, "550 5.1.3 Expanded address too long");
	r->dlv = dlv;
	(void)n;
}

/* ------------------------------------------------------ entry parsing */

/* "error:550 text" in aliases(5): the recipient is refused with it. */
static void
xp_error(struct expansion *x, const char *e)
{
	if ((e[0] == '4' || e[0] == '5') && e[1] >= '0' && e[1] <= '9' &&
	    e[2] >= '0' && e[2] <= '9' && (e[3] == ' ' || e[3] == '\0'))
		xp_fail(x, e[0] == '4' ? LKA_TEMPFAIL : LKA_REJECT, "%.200s",
		    e);
	else
		xp_fail(x, LKA_REJECT, "550 %.200s", e);
}

/* One alias/.forward entry: "user", "a@b", "/file", "|cmd", ":include:". */
static void
xp_entry(struct expansion *x, const struct xnode *parent, char *e,
    const char *runas)
{
	size_t	 len;

	while (*e == ' ' || *e == '\t')
		e++;
	len = strlen(e);
	while (len && (e[len - 1] == ' ' || e[len - 1] == '\t'))
		e[--len] = '\0';
	if (len >= 2 && e[0] == '"' && e[len - 1] == '"') {
		e[len - 1] = '\0';
		e++;
	}
	if (*e == '\\')		/* "\user": the mailbox, never expanded */
		return xp_push(x, parent, X_MAILBOX, e + 1, parent->action,
		    NULL);
	if (*e == '\0')
		return;
	if (*e == '|')
		return xp_push(x, parent, X_COMMAND, e + 1, parent->action,
		    runas);
	if (*e == '/')
		return xp_push(x, parent, X_FILE, e, parent->action, runas);
	if (strncasecmp(e, ":include:", 9) == 0)
		return xp_push(x, parent, X_INCLUDE, e + 9, parent->action,
		    runas);
	if (strncasecmp(e, "error:", 6) == 0) {
		xp_error(x, e + 6);
		return;
	}
	if (strchr(e, '@') != NULL)
		return xp_push(x, parent, X_ADDRESS, e, NULL, NULL);
	xp_push(x, parent, X_USER, e, parent->action, NULL);
}

/*
 * A list of entries separated by commas or newlines; '#' starts a comment
 * at the beginning of a line, commas inside double quotes do not split.
 */
static void
xp_entries(struct expansion *x, const struct xnode *parent, char *list,
    const char *runas)
{
	char	*p, *start;
	int	 quoted = 0, bol = 1;

	for (p = start = list; ; p++) {
		if (bol && *p == '#') {
			while (*p && *p != '\n')
				p++;
			start = p;
		}
		bol = 0;
		if (*p == '"')
			quoted = !quoted;
		if (*p == '\0' || *p == '\n' || (*p == ',' && !quoted)) {
			int end = *p == '\0';

			bol = *p == '\n';
			*p = '\0';
			if (*start)
				xp_entry(x, parent, start, runas);
			if (end)
				return;
			start = p + 1;
		}
	}
}

/* -------------------------------------------------------- expansion */

static const struct rule *
xp_match(struct expansion *x, const char *rcpt)
{
	struct match_ctx	 ctx;
	const struct rule	*r;
	int			 tempfail;

	memset(&ctx, 0, sizeof(ctx));
	ctx.local = x->local;
	ctx.src = x->local ? NULL : &x->ss;
	ctx.tag = x->tag;
	ctx.helo = x->helo;
	ctx.auth = x->auth;
	ctx.tls = x->tls;
	ctx.rdns = x->rdns;
	ctx.sender = x->sender;
	ctx.rcpt = rcpt;
	r = ruleset_match(env.conf, &ctx, &tempfail);
	if (tempfail) {
		xp_fail(x, LKA_TEMPFAIL, "451 4.3.0 Temporary failure: a table"
		    " lookup failed for <%.200s>", rcpt);
		return NULL;
	}
	if (r == NULL || r->reject || r->action == NULL) {
		xp_fail(x, LKA_REJECT, "550 Invalid recipient: <%.200s>",
		    rcpt);
		return NULL;
	}
	return r;
}

/* 1 found (value set), 0 not, -1 failed. */
static int
xp_lookup(struct expansion *x, struct table *t, const char *key, char *value,
    size_t len)
{
	int	 r = table_lookup(t, K_ALIAS, key, value, len);

	if (r == -1)
		xp_fail(x, LKA_TEMPFAIL, "451 4.3.0 Temporary failure: table"
		    " %s did not answer", t->name);
	return r;
}

/* virtual: "user+tag@dom", "user@dom", "user", "@dom", in that order. */
static int
xp_virtual(struct expansion *x, struct table *t, const char *addr,
    char *value, size_t len)
{
	char	 user[SMTPD_MAXADDR], domain[SMTPD_MAXADDR];
	char	 key[SMTPD_MAXADDR * 2];
	int	 r;

	if ((r = xp_lookup(x, t, addr, value, len)) != 0)
		return r;
	if (addr_split(addr, user, sizeof(user), domain, sizeof(domain)) == -1)
		return 0;
	subaddr_strip(user, env.conf->subaddr_delim);
	snprintf(key, sizeof(key), "%s@%s", user, domain);
	if (strcmp(key, addr) != 0 &&
	    (r = xp_lookup(x, t, key, value, len)) != 0)
		return r;
	if ((r = xp_lookup(x, t, user, value, len)) != 0)
		return r;
	snprintf(key, sizeof(key), "@%s", domain);
	return xp_lookup(x, t, key, value, len);
}

static void
xp_address(struct expansion *x, struct xnode *n)
{
	const struct rule	*r;
	const struct action	*a;
	char			 user[SMTPD_MAXADDR];
	char			*value;
	char			 srs[SRS_ADDR_MAX];

	/*
	 * A bounce to one of our SRS addresses goes to the address it
	 * hides, routed as mail of our own (OpenSMTPD flags it internal),
	 * so that it may be relayed back to a remote sender.
	 */
	if (x->sender[0] == '\0' && !n->srs_seen) {
		n->srs_seen = 1;	/* a node run again keeps its answer */
		if (srs_bounce_rcpt(n->value, srs, sizeof(srs))) {
			free(n->value);
			n->value = xstrdup(srs);
			x->local = 1;
		}
	}
	if (addr_split(n->value, user, sizeof(user), n->domain,
	    sizeof(n->domain)) == -1) {
		xp_fail(x, LKA_REJECT, "550 5.1.3 Bad address <%.200s>",
		    n->value);
		return;
	}
	if ((r = xp_match(x, n->value)) == NULL)
		return;
	a = r->action;
	n->action = a;
	if (a->method == A_RELAY)
		return xp_result(x, n, a, n->value, "", DLV_ACTION, "");
	if (a->virtual) {
		int found;

		value = xmalloc(VALUE_MAX);
		found = xp_virtual(x, a->virtual, n->value, value, VALUE_MAX);
		if (found == 1)
			xp_entries(x, n, value, a->user ? a->user :
			    ALIAS_USER);
		else if (found == 0)
			xp_fail(x, LKA_REJECT, "550 Invalid recipient:"
			    " <%.200s>", x->rcpt);
		free(value);
		return;
	}
	subaddr_strip(user, env.conf->subaddr_delim);
	lowercase(user);
	xp_push(x, n, X_USER, user, a, NULL);
	/* Delivered as it was addressed unless an alias changes it. */
	if (x->todo && x->todo->kind == X_USER && x->todo->depth == n->depth + 1)
		msd_strlcpy(x->todo->addr, n->value, sizeof(x->todo->addr));
}

/* The user must exist, or the mail could never be delivered. */
static int
xp_user_ok(struct expansion *x, const struct action *a, const char *user)
{
	struct userinfo	 ui;
	int		 r;

	if (!env.privileged || a->user)
		return 1;
	if ((r = user_lookup(a->userbase, user, &ui)) == 1)
		return 1;
	if (r == -1)
		xp_fail(x, LKA_TEMPFAIL, "451 4.3.0 Temporary failure: user"
		    " lookup for %.100s failed", user);
	else {
		log_info("lookup: no such user %s for <%s>", user, x->rcpt);
		xp_fail(x, LKA_REJECT, "550 Invalid recipient: <%.200s>",
		    x->rcpt);
	}
	return 0;
}

static void
xp_mailbox(struct expansion *x, struct xnode *n)
{
	const struct action	*a = n->action;
	char			 dest[SMTPD_MAXADDR];

	if (a->method == A_EXPAND_ONLY || a->method == A_FORWARD_ONLY) {
		xp_fail(x, LKA_REJECT, "550 5.1.1 <%.200s>: no delivery"
		    " method in aliases or .forward", x->rcpt);
		return;
	}
	if (!n->user_known && !xp_user_ok(x, a, n->value))
		return;
	if (n->addr[0] != '\0')
		msd_strlcpy(dest, n->addr, sizeof(dest));
	else if ((size_t)snprintf(dest, sizeof(dest), "%s@%s", n->value,
	    n->domain) >= sizeof(dest)) {
		xp_fail(x, LKA_REJECT, "550 5.1.3 Expanded address too long");
		return;
	}
	/* As addressed: the delivery side derives the user from dest. */
	xp_result(x, n, a, dest, n->addr[0] ? "" : n->value, DLV_ACTION, "");
}

/* Asks the parent for the user's .forward; resumes in xp_forward_result. */
static void
xp_forward_ask(struct expansion *x, struct xnode *n)
{
	struct userinfo	 ui;
	struct ipc_out	*o;

	if (user_lookup(n->action->userbase, n->value, &ui) != 1) {
		xp_mailbox(x, n);	/* reports the unknown user */
		return;
	}
	n->user_known = 1;
	x->waiting = n;
	o = ipc_begin(env.peer[ROLE_PARENT], IMSG_LKA_FORWARD);
	ipc_put_u64(o, x->id);
	ipc_put_str(o, ui.name);
	ipc_put_str(o, ui.home);
	ipc_put_u32(o, ui.uid);
	ipc_end(o, -1);
}

/* Sets x->waiting when the expansion must wait for the parent. */
static void
xp_user(struct expansion *x, struct xnode *n)
{
	const struct action	*a = n->action;
	char			*value;
	int			 r;

	if (a->alias) {
		value = xmalloc(VALUE_MAX);
		r = xp_lookup(x, a->alias, n->value, value, VALUE_MAX);
		if (r == 1)
			xp_entries(x, n, value, a->user ? a->user :
			    ALIAS_USER);
		free(value);
		if (r != 0)
			return;
	}
	/*
	 * .forward files are read for users with their own uid: with
	 * `user`, or unprivileged, every delivery is the same account.
	 */
	if (env.privileged && a->user == NULL && a->userbase == NULL &&
	    a->method != A_RELAY) {
		xp_forward_ask(x, n);
		return;
	}
	xp_mailbox(x, n);
}

/* Reads at most FORWARD_MAX bytes; NULL on error (errno set). */
static char *
read_small(int fd, size_t *lenp)
{
	char	*buf = xmalloc(FORWARD_MAX + 1);
	size_t	 len = 0;
	ssize_t	 r;

	while (len < FORWARD_MAX &&
	    (r = read(fd, buf + len, FORWARD_MAX - len)) != 0) {
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1) {
			free(buf);
			return NULL;
		}
		len += r;
	}
	buf[len] = '\0';
	*lenp = len;
	return buf;
}

/* ":include:/path": a list kept in a file the lookup role can read. */
static void
xp_include(struct expansion *x, struct xnode *n)
{
	char	*buf;
	size_t	 len;
	int	 fd;

	if (n->value[0] != '/' ||
	    (fd = open(n->value, O_RDONLY | O_NOFOLLOW | O_NONBLOCK |
	    O_CLOEXEC)) == -1) {
		log_warnx("lookup: :include:%s: %s", n->value,
		    n->value[0] == '/' ? strerror(errno) : "not absolute");
		xp_fail(x, LKA_TEMPFAIL, "451 4.3.0 Temporary failure:"
		    " cannot read an :include: list");
		return;
	}
	buf = read_small(fd, &len);
	close(fd);
	if (buf == NULL) {
		xp_fail(x, LKA_TEMPFAIL, "451 4.3.0 Temporary failure:"
		    " cannot read an :include: list");
		return;
	}
	if (strlen(buf) == len)
		xp_entries(x, n, buf, n->runas);
	free(buf);
}

/* One node; x->waiting is set when it waits for the parent. */
static void
xp_node(struct expansion *x, struct xnode *n)
{
	switch (n->kind) {
	case X_ADDRESS:
		xp_address(x, n);
		break;
	case X_USER:
		xp_user(x, n);
		break;
	case X_MAILBOX:
		xp_mailbox(x, n);
		break;
	case X_FILE:
	case X_COMMAND:
		if (n->action->method == A_FORWARD_ONLY) {
			xp_fail(x, LKA_REJECT, "550 5.1.1 <%.200s>:"
			    " forward-only accepts remote addresses"
			    " only", x->rcpt);
			break;
		}
		xp_result(x, n, n->action, x->rcpt,
		    n->runas ? n->runas : ALIAS_USER,
		    n->kind == X_FILE ? DLV_FILE : DLV_COMMAND,
		    n->value);
		break;
	case X_INCLUDE:
		xp_include(x, n);
		break;
	}
}

/*
 * A node whose table answers are not in yet: back on the stack, as if it
 * had not run (every node looks its tables up before it changes anything),
 * to run again when they are.
 */
static void
xp_undo(struct expansion *x, struct xnode *n)
{
	x->seen = n->next;
	n->next = x->todo;
	x->todo = n;
	x->status = LKA_OK;
	x->error[0] = '\0';
}

/* Runs nodes until done or until waiting for the parent or a table. */
static void
xp_step(struct expansion *x)
{
	struct xnode	*n;

	while (x->status == LKA_OK && (n = x->todo) != NULL) {
		x->todo = n->next;
		n->next = x->seen;
		x->seen = n;
		table_cache_use(x->cache);
		xp_node(x, n);
		table_cache_use(NULL);
		if (table_cache_blocked(x->cache)) {
			xp_undo(x, n);
			return;
		}
		if (x->waiting != NULL)
			return;
	}
}

/* ----------------------------------------------------------- replies */

/* Each delivery as five fields; see xresult_get(). */
static void
xp_reply(struct expansion *x)
{
	struct ipc_out	*o;
	size_t		 i, need;

	if (x->status == LKA_OK && x->nres == 0)
		xp_fail(x, LKA_REJECT, "550 Invalid recipient: <%.200s>",
		    x->rcpt);
	for (need = 64, i = 0; x->status == LKA_OK && i < x->nres; i++)
		need += sizeof(struct xresult) - sizeof(x->res[i].dlv_arg) +
		    strlen(x->res[i].dlv_arg) + 32;
	if (x->status == LKA_OK && need > IPC_MAX_MSG)
		xp_fail(x, LKA_REJECT, "550 5.5.3 Too many recipients after"
		    " expansion");
	log_debug("lookup: rcpt <%s> from <%s>: %s, %zu deliveries", x->rcpt,
	    x->sender, x->status == LKA_OK ? "ok" : x->error, x->nres);
	o = ipc_begin(env.peer[x->from], IMSG_LKA_RCPT_RESULT);
	ipc_put_u64(o, x->reqid);
	ipc_put_u32(o, x->status);
	ipc_put_str(o, x->status == LKA_OK ? NULL : x->error);
	ipc_put_u32(o, x->status == LKA_OK ? x->nres : 0);
	for (i = 0; x->status == LKA_OK && i < x->nres; i++) {
		ipc_put_str(o, x->res[i].action);
		ipc_put_str(o, x->res[i].dest);
		ipc_put_str(o, x->res[i].user);
		ipc_put_u32(o, x->res[i].dlv);
		ipc_put_str(o, x->res[i].dlv_arg);
	}
	ipc_end(o, -1);
}

/* One delivery of an IMSG_LKA_RCPT_RESULT; -1 on a malformed one. */
int
xresult_get(struct ipc_msg *m, struct xresult *r)
{
	const char	*action, *dest, *user, *arg;

	action = ipc_get_str(m);
	dest = ipc_get_str(m);
	user = ipc_get_str(m);
	r->dlv = ipc_get_u32(m);
	arg = ipc_get_str(m);
	if (action == NULL || dest == NULL || user == NULL || arg == NULL ||
	    msd_strlcpy(r->action, action, sizeof(r->action)) >=
	    sizeof(r->action) || msd_strlcpy(r->dest, dest, sizeof(r->dest)) >=
	    sizeof(r->dest) || msd_strlcpy(r->user, user, sizeof(r->user)) >=
	    sizeof(r->user) || msd_strlcpy(r->dlv_arg, arg,
	    sizeof(r->dlv_arg)) >= sizeof(r->dlv_arg))
		return -1;
	return 0;
}

static void
xp_free(struct expansion *x)
{
	struct expansion **p;

	for (p = &expansions; *p; p = &(*p)->next)
		if (*p == x) {
			*p = x->next;
			break;
		}
	table_cache_free(x->cache);
	xlist_free(x->todo);
	xlist_free(x->seen);
	free(x->res);
	free(x->tag);
	free(x->helo);
	free(x->rdns);
	free(x->auth);
	free(x->sender);
	free(x->rcpt);
	free(x);
}

static void
xp_run(struct expansion *x)
{
	xp_step(x);
	if (x->waiting != NULL || table_cache_pending(x->cache) > 0)
		return;
	xp_reply(x);
	xp_free(x);
}

/* The table answers a walk waited for are in. */
static void
xp_resume(void *arg)
{
	xp_run(arg);
}

static char *
xstrdup_or_null(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

/*
 * IMSG_LKA_RCPT from smtp or queue: reqid, local, address, tag, helo,
 * auth, tls, sender, rcpt, the client's verified name or NULL.
 */
void
aliases_expand(struct ipc_msg *m, enum smtpd_role from)
{
	struct expansion	*x;
	const void		*p;
	size_t			 len;
	const char		*tag, *helo, *auth, *sender, *rcpt, *rdns;

	x = xcalloc(1, sizeof(*x));
	x->from = from;
	x->reqid = ipc_get_u64(m);
	x->local = ipc_get_u32(m);
	p = ipc_get_data(m, &len);
	if (len != sizeof(x->ss))
		fatalx("lookup: bad address length");
	memcpy(&x->ss, p, sizeof(x->ss));
	tag = ipc_get_str(m);
	helo = ipc_get_str(m);
	auth = ipc_get_str(m);
	x->tls = ipc_get_u32(m);
	sender = ipc_get_str(m);
	rcpt = ipc_get_str(m);
	rdns = ipc_get_str(m);
	ipc_get_end(m);
	if (sender == NULL || rcpt == NULL)
		fatalx("lookup: missing address");
	x->tag = xstrdup_or_null(tag);
	x->helo = xstrdup_or_null(helo);
	x->rdns = xstrdup_or_null(rdns);
	x->auth = xstrdup_or_null(auth);
	x->sender = xstrdup(sender);
	x->rcpt = xstrdup(rcpt);
	x->id = ++next_id;
	x->status = LKA_OK;
	x->cache = table_cache_new(xp_resume, x);
	x->next = expansions;
	expansions = x;
	xp_push(x, NULL, X_ADDRESS, rcpt, NULL, NULL);
	xp_run(x);
}

/* A .forward's contents: what the user asked for instead of the mailbox. */
static void
xp_forward_read(struct expansion *x, struct xnode *n, int fd)
{
	char	*buf;
	size_t	 len;

	if ((buf = read_small(fd, &len)) == NULL) {
		xp_fail(x, LKA_TEMPFAIL, "451 4.3.0 Temporary failure:"
		    " cannot read ~%s/.forward", n->value);
		return;
	}
	if (strlen(buf) != len) {
		log_warnx("lookup: ~%s/.forward contains a NUL byte, ignored",
		    n->value);
		buf[0] = '\0';
	}
	if (buf[0] == '\0')
		xp_mailbox(x, n);
	else
		xp_entries(x, n, buf, n->value);
	free(buf);
}

/* IMSG_LKA_FORWARD_RESULT from the parent: id, status [+fd]. */
void
aliases_forward_result(struct ipc_msg *m)
{
	struct expansion	*x;
	struct xnode		*n;
	uint64_t		 id = ipc_get_u64(m);
	uint32_t		 status = ipc_get_u32(m);

	ipc_get_end(m);
	for (x = expansions; x; x = x->next)
		if (x->id == id)
			break;
	if (x == NULL || (n = x->waiting) == NULL)
		fatalx("lookup: .forward answer for no expansion");
	x->waiting = NULL;
	if (status == FORWARD_TEMPFAIL)
		xp_fail(x, LKA_TEMPFAIL, "451 4.3.0 Temporary failure:"
		    " cannot open ~%s/.forward", n->value);
	else if (status == FORWARD_NONE || m->fd == -1)
		xp_mailbox(x, n);
	else
		xp_forward_read(x, n, m->fd);
	if (m->fd != -1)
		close(m->fd);
	xp_run(x);
}

/* ---------------------------------------------------------- the parent */

/*
 * ~/.forward for the lookup role, which cannot read home directories.
 * Only a regular file owned by the user (or root) and writable by no one
 * else is used, so nobody can make another user's mail run a command.
 */
static uint32_t
forward_check(const char *path, uid_t uid, int *fdp)
{
	struct stat	 st;
	int		 fd;

	*fdp = -1;
	if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK |
	    O_CLOEXEC)) == -1) {
		if (errno == ENOENT || errno == ENOTDIR)
			return FORWARD_NONE;
		if (errno == ELOOP) {
			log_warnx("forward: %s is a symbolic link, ignored",
			    path);
			return FORWARD_NONE;
		}
		log_warn("forward: %s", path);
		return FORWARD_TEMPFAIL;
	}
	if (fstat(fd, &st) == -1) {
		log_warn("forward: %s", path);
		close(fd);
		return FORWARD_TEMPFAIL;
	}
	if (!S_ISREG(st.st_mode) || (st.st_uid != uid && st.st_uid != 0) ||
	    (st.st_mode & (S_IWGRP | S_IWOTH))) {
		log_warnx("forward: %s ignored: %s", path,
		    !S_ISREG(st.st_mode) ? "not a regular file" :
		    (st.st_uid != uid && st.st_uid != 0) ?
		    "not owned by the user" : "writable by group or others");
		close(fd);
		return FORWARD_NONE;
	}
	*fdp = fd;
	return FORWARD_OPEN;
}

void
forward_open(struct ipc_msg *m)
{
	struct ipc_out	*o;
	char		 path[PATH_MAX];
	const char	*user, *home;
	uint64_t	 id;
	uint32_t	 uid, status = FORWARD_NONE;
	int		 fd = -1;

	id = ipc_get_u64(m);
	user = ipc_get_str(m);
	home = ipc_get_str(m);
	uid = ipc_get_u32(m);
	ipc_get_end(m);
	if (user != NULL && home != NULL && home[0] == '/' &&
	    (size_t)snprintf(path, sizeof(path), "%s/.forward", home) <
	    sizeof(path))
		status = forward_check(path, uid, &fd);
	o = ipc_begin(env.peer[ROLE_LOOKUP], IMSG_LKA_FORWARD_RESULT);
	ipc_put_u64(o, id);
	ipc_put_u32(o, status);
	ipc_end(o, fd);
}
