/*
 * filter_builtin.c - the builtin filters of smtpd.conf(5),
 *
 *	filter NAME phase PHASE match [!]COND ... DECISION [TEXT]
 *
 * as an in-process filter module.  The daemon turns each such filter into
 * an instance of this module whose arguments are the filter's words after
 * its name, tables written "<name>"; `filter NAME module builtin ARGS`
 * is the same thing spelled out.
 *
 * What the conditions look at comes from the session's reports, as a
 * filter program would see them: link-connect (reverse name, fcrdns
 * result, source address), link-identify (HELO name), link-auth (user),
 * tx-mail (sender, until tx-reset); and from the request of the filter's
 * own phase (the HELO name, sender or recipient being given).  Several
 * conditions must all hold; negation inverts one.  Table conditions ask
 * the host (msd_host.table_match), which may answer later for a table
 * served by a worker process: the request then waits, as a filter
 * program's answer would.  A table that fails gives 451, not a decision.
 */
#include <arpa/inet.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MSD_ABI_TARGET_MINOR	4
#include "modsmtpd.h"

#define BF_HASH			64
#define BF_TEMPFAIL		"451 4.3.0 Temporary failure: a filter table" \
				" did not answer"

enum bf_cond { C_FCRDNS, C_RDNS, C_SRC, C_HELO, C_AUTH, C_MAIL_FROM,
    C_RCPT_TO, C_N };
enum bf_decision { D_BYPASS, D_DISCONNECT, D_JUNK, D_REJECT, D_REWRITE,
    D_REPORT, D_N };

static const char *const cond_words[C_N] = {
	"fcrdns", "rdns", "src", "helo", "auth", "mail-from", "rcpt-to",
};
/* 0: no table, 1: a table, 2: a table or none */
static const int cond_table[C_N] = { 0, 2, 1, 1, 2, 1, 1 };
static const char *const decision_words[D_N] = {
	"bypass", "disconnect", "junk", "reject", "rewrite", "report",
};
static const struct {
	const char	*word;
	uint32_t	 phase;
} phases[] = {
	{ "connect", MSD_FP_CONNECT }, { "helo", MSD_FP_HELO },
	{ "ehlo", MSD_FP_EHLO }, { "mail-from", MSD_FP_MAIL_FROM },
	{ "rcpt-to", MSD_FP_RCPT_TO }, { "data", MSD_FP_DATA },
	{ "commit", MSD_FP_COMMIT },
};

struct cond {
	enum bf_cond	 kind;
	int		 neg;
	int		 regex;
	char		*table;		/* NULL: the form without a table */
};

struct bsess;

/* A table question out; the session may be gone when it comes back. */
struct bf;
struct pend {
	struct bf	*b;
	struct bsess	*s;		/* NULL: forgotten */
};

struct bsess {
	struct bsess	*next;
	uint64_t	 sid;
	char		*rdns;		/* NULL: none */
	int		 fcrdns;	/* "pass" */
	char		*src;		/* address, no port; "local" */
	char		*helo;
	char		*user;		/* authenticated */
	char		*mail_from;
	/* the request being evaluated */
	uint64_t	 token;
	char		*param;
	size_t		 ci;		/* condition */
	size_t		 si;		/* its service */
	int		 tres;		/* a table's answer, when have_tres */
	int		 have_tres;
	struct pend	*pend;
};

struct bf {
	const struct msd_host	*host;
	msd_filter		*self;
	char			*name;
	uint32_t		 phase;
	struct cond		*conds;
	size_t			 nconds;
	enum bf_decision	 decision;
	char			*text;
	struct bsess		*sessions[BF_HASH];
};

static void	bf_eval(struct bf *, struct bsess *);

/* ------------------------------------------------------------ helpers */

static char *
dup(const char *s)
{
	size_t	 n = strlen(s) + 1;
	char	*p = malloc(n);

	if (p != NULL)
		memcpy(p, s, n);
	return p;
}

/* Replaces *dst with a copy of s (NULL clears); -1 out of memory. */
static int
set(char **dst, const char *s)
{
	char	*p = NULL;

	if (s != NULL && (p = dup(s)) == NULL)
		return -1;
	free(*dst);
	*dst = p;
	return 0;
}

static int	bf_err(const struct msd_host *, msd_result *, const char *, ...)
		    __attribute__((format(printf, 3, 4)));

static int
bf_err(const struct msd_host *host, msd_result *err, const char *fmt, ...)
{
	char	 buf[512];
	va_list	 ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	host->result_error(err, buf);
	return MSD_PERMFAIL;
}

static int
word_index(const char *const *words, size_t n, const char *w)
{
	size_t	 i;

	for (i = 0; i < n; i++)
		if (strcmp(words[i], w) == 0)
			return (int)i;
	return -1;
}

/* "<name>" -> name; NULL when w is not written as a table. */
static char *
table_arg(const char *w)
{
	size_t	 n = strlen(w);
	char	*t;

	if (n < 3 || w[0] != '<' || w[n - 1] != '>')
		return NULL;
	if ((t = malloc(n - 1)) == NULL)
		return NULL;
	memcpy(t, w + 1, n - 2);
	t[n - 2] = '\0';
	return t;
}

/* ------------------------------------------------------------ parsing */

/* [!]COND [regex] [<table>]; *i moves past it. */
static int
parse_cond(struct bf *b, uint32_t argc, const char *const *argv,
    uint32_t *i, msd_result *err)
{
	struct cond	*c, *v;
	const char	*w = argv[*i];
	int		 k, neg = 0;

	if (strcmp(w, "!") == 0) {
		neg = 1;
		if (++*i == argc)
			return bf_err(b->host, err, "a condition after \"!\"");
		w = argv[*i];
	} else if (w[0] == '!') {
		neg = 1;
		w++;
	}
	if ((k = word_index(cond_words, C_N, w)) == -1)
		return bf_err(b->host, err, "\"%s\" is not a condition (fcrdns,"
		    " rdns, src, helo, auth, mail-from or rcpt-to)", w);
	if ((v = reallocarray(b->conds, b->nconds + 1, sizeof(*v))) == NULL)
		return bf_err(b->host, err, "out of memory");
	b->conds = v;
	c = &b->conds[b->nconds++];
	memset(c, 0, sizeof(*c));
	c->kind = k;
	c->neg = neg;
	++*i;
	if (cond_table[k] && *i < argc && strcmp(argv[*i], "regex") == 0) {
		c->regex = 1;
		++*i;
	}
	if (cond_table[k] && *i < argc && (c->table = table_arg(argv[*i])))
		++*i;
	if (c->table == NULL && (cond_table[k] == 1 || c->regex))
		return bf_err(b->host, err, "condition %s needs a <table>", w);
	return MSD_OK;
}

static int
parse_phase(struct bf *b, const char *w, msd_result *err)
{
	size_t	 i;

	for (i = 0; i < sizeof(phases) / sizeof(phases[0]); i++)
		if (strcmp(phases[i].word, w) == 0) {
			b->phase = phases[i].phase;
			return MSD_OK;
		}
	return bf_err(b->host, err, "\"%s\" is not a phase (connect, helo, "
	    "ehlo, mail-from, rcpt-to, data or commit)", w);
}

/* phase P match COND ... DECISION [TEXT] */
static int
parse_args(struct bf *b, uint32_t argc, const char *const *argv,
    msd_result *err)
{
	uint32_t	 i = 3;
	int		 d, rc;

	if (argc < 4 || strcmp(argv[0], "phase") != 0 ||
	    strcmp(argv[2], "match") != 0)
		return bf_err(b->host, err, "expected \"phase PHASE match "
		    "CONDITION ... DECISION\"");
	if ((rc = parse_phase(b, argv[1], err)) != MSD_OK)
		return rc;
	while (i < argc && word_index(decision_words, D_N, argv[i]) == -1)
		if ((rc = parse_cond(b, argc, argv, &i, err)) != MSD_OK)
			return rc;
	if (b->nconds == 0 || i == argc)
		return bf_err(b->host, err, "expected a condition and then a "
		    "decision (bypass, junk, disconnect, reject, rewrite or "
		    "report)");
	b->decision = d = word_index(decision_words, D_N, argv[i++]);
	if (d == D_BYPASS || d == D_JUNK) {
		if (i != argc)
			return bf_err(b->host, err, "\"%s\" after %s",
			    argv[i], decision_words[d]);
		return MSD_OK;
	}
	if (i + 1 != argc)
		return bf_err(b->host, err, "%s needs exactly one text",
		    decision_words[d]);
	if ((d == D_REJECT || d == D_DISCONNECT) && ((argv[i][0] != '4' &&
	    argv[i][0] != '5') || argv[i][1] < '0' || argv[i][1] > '9' ||
	    argv[i][2] < '0' || argv[i][2] > '9' ||
	    (argv[i][3] != ' ' && argv[i][3] != '\0')))
		return bf_err(b->host, err, "%s \"%s\": the text must start "
		    "with a 4xx or 5xx code", decision_words[d], argv[i]);
	if ((b->text = dup(argv[i])) == NULL)
		return bf_err(b->host, err, "out of memory");
	return MSD_OK;
}

/* ----------------------------------------------------------- sessions */

static struct bsess *
sess_find(struct bf *b, uint64_t sid, int create)
{
	struct bsess	*s;

	for (s = b->sessions[sid % BF_HASH]; s; s = s->next)
		if (s->sid == sid)
			return s;
	if (!create || (s = calloc(1, sizeof(*s))) == NULL)
		return NULL;
	s->sid = sid;
	s->next = b->sessions[sid % BF_HASH];
	b->sessions[sid % BF_HASH] = s;
	return s;
}

static void
sess_free(struct bf *b, struct bsess *s)
{
	struct bsess	**p;

	for (p = &b->sessions[s->sid % BF_HASH]; *p; p = &(*p)->next)
		if (*p == s) {
			*p = s->next;
			break;
		}
	if (s->pend != NULL)
		s->pend->s = NULL;
	free(s->rdns);
	free(s->src);
	free(s->helo);
	free(s->user);
	free(s->mail_from);
	free(s->param);
	free(s);
}

/* "1.2.3.4:25" -> "1.2.3.4", "[::1]:25" -> "::1", "unix:..." -> "local" */
static int
set_src(struct bsess *s, const char *f)
{
	char		 buf[128];
	const char	*end;

	if (strncmp(f, "unix:", 5) == 0)
		return set(&s->src, "local");
	if (f[0] == '[') {
		f++;
		end = strchr(f, ']');
	} else
		end = strrchr(f, ':');
	if (end == NULL)
		end = f + strlen(f);
	if ((size_t)(end - f) >= sizeof(buf))
		return set(&s->src, NULL);
	memcpy(buf, f, end - f);
	buf[end - f] = '\0';
	return set(&s->src, buf);
}

static void
bf_report(void *inst, uint64_t sid, uint32_t event, uint32_t n,
    const char *const *f)
{
	struct bf	*b = inst;
	struct bsess	*s = sess_find(b, sid, event == MSD_FE_LINK_CONNECT);

	if (s == NULL)
		return;
	switch (event) {
	case MSD_FE_LINK_CONNECT:
		if (n < 3)
			return;
		set(&s->rdns, strcmp(f[0], "<unknown>") && *f[0] ? f[0] : NULL);
		s->fcrdns = strcmp(f[1], "pass") == 0;
		set_src(s, f[2]);
		break;
	case MSD_FE_LINK_IDENTIFY:
		if (n >= 2)
			set(&s->helo, f[1]);
		break;
	case MSD_FE_LINK_AUTH:
		if (n >= 2 && strcmp(f[0], "pass") == 0)
			set(&s->user, f[1]);
		break;
	case MSD_FE_TX_MAIL:
		if (n >= 3 && strcmp(f[1], "ok") == 0)
			set(&s->mail_from, f[2]);
		break;
	case MSD_FE_TX_RESET:
		set(&s->mail_from, NULL);
		break;
	}
}

static void
bf_session_end(void *inst, uint64_t sid)
{
	struct bf	*b = inst;
	struct bsess	*s = sess_find(b, sid, 0);

	if (s != NULL)
		sess_free(b, s);
}

/* --------------------------------------------------------- conditions */

/* A reverse name that is a name, not an address in brackets or not. */
static int
is_name(const char *s)
{
	unsigned char	 a[16];
	char		 buf[64];
	size_t		 n;

	if (s == NULL || *s == '\0')
		return 0;
	n = strlen(s);
	if (s[0] == '[' && s[n - 1] == ']' && n - 2 < sizeof(buf)) {
		memcpy(buf, s + 1, n - 2);
		buf[n - 2] = '\0';
		s = buf;
	}
	return inet_pton(AF_INET, s, a) != 1 && inet_pton(AF_INET6, s, a) != 1;
}

/* What a table condition looks up; NULL: nothing to match. */
static const char *
cond_key(const struct bsess *s, const struct cond *c)
{
	switch (c->kind) {
	case C_RDNS:
		return s->rdns;
	case C_SRC:
		return s->src;
	case C_HELO:
		return s->helo;
	case C_AUTH:
		return s->user;
	case C_MAIL_FROM:
		return s->mail_from != NULL && *s->mail_from ? s->mail_from :
		    NULL;
	case C_RCPT_TO:
		return s->param;
	default:
		return NULL;
	}
}

/* The services asked in order, as OpenSMTPD's builtin filters do. */
static size_t
cond_services(const struct cond *c, uint32_t svc[2])
{
	if (c->regex) {
		svc[0] = MSD_TS_REGEX;
		return 1;
	}
	switch (c->kind) {
	case C_RDNS:
	case C_HELO:
		svc[0] = MSD_TS_DOMAIN;
		return 1;
	case C_SRC:
		svc[0] = MSD_TS_NETADDR;
		return 1;
	case C_AUTH:
		svc[0] = MSD_TS_STRING;
		svc[1] = MSD_TS_CREDENTIALS;
		return 2;
	default:
		svc[0] = MSD_TS_MAILADDR;
		return 1;
	}
}

static void
table_done(void *arg, int result)
{
	struct pend	*p = arg;
	struct bf	*b = p->b;
	struct bsess	*s = p->s;

	free(p);
	if (s == NULL)
		return;		/* the session or its request went away */
	s->pend = NULL;
	s->tres = result;
	s->have_tres = 1;
	bf_eval(b, s);
}

/*
 * The table's answer for the condition under evaluation: MSD_OK,
 * MSD_NOTFOUND, MSD_TEMPFAIL, or MSD_PENDING when bf_eval runs again
 * once it is in.
 */
static int
cond_table_match(struct bf *b, struct bsess *s, const struct cond *c,
    const char *key, uint32_t svc)
{
	struct pend	*p;
	int		 r;

	if (s->have_tres) {
		s->have_tres = 0;
		return s->tres;
	}
	if ((p = calloc(1, sizeof(*p))) == NULL)
		return MSD_TEMPFAIL;
	p->b = b;
	p->s = s;
	r = b->host->table_match(c->table, svc, key, table_done, p);
	if (r == MSD_PENDING)
		s->pend = p;
	else
		free(p);
	return r;
}

/* 1 matched, 0 not, MSD_TEMPFAIL, MSD_PENDING. */
static int
cond_match(struct bf *b, struct bsess *s, const struct cond *c)
{
	uint32_t	 svc[2];
	const char	*key;
	size_t		 n;
	int		 r;

	if (c->table == NULL) {
		s->si = 0;
		switch (c->kind) {
		case C_FCRDNS:
			return s->fcrdns;
		case C_RDNS:
			return is_name(s->rdns);
		default:	/* C_AUTH */
			return s->user != NULL;
		}
	}
	if ((key = cond_key(s, c)) == NULL) {
		s->si = 0;
		return 0;
	}
	n = cond_services(c, svc);
	for (; s->si < n; s->si++) {
		r = cond_table_match(b, s, c, key, svc[s->si]);
		if (r == MSD_PENDING || r == MSD_TEMPFAIL)
			return r;
		if (r == MSD_OK) {
			s->si = 0;
			return 1;
		}
		if (r != MSD_NOTFOUND)
			return MSD_TEMPFAIL;
	}
	s->si = 0;
	return 0;
}

static void
answer(struct bf *b, struct bsess *s, uint32_t verdict, const char *param)
{
	uint64_t	 token = s->token;

	s->ci = 0;
	s->si = 0;
	b->host->filter_result(b->self, s->sid, token, verdict, param);
}

static const uint32_t verdict_of[D_N] = {
	[D_BYPASS] = MSD_FV_BYPASS, [D_DISCONNECT] = MSD_FV_DISCONNECT,
	[D_JUNK] = MSD_FV_JUNK, [D_REJECT] = MSD_FV_REJECT,
	[D_REWRITE] = MSD_FV_REWRITE, [D_REPORT] = MSD_FV_REPORT,
};

/* Conditions from s->ci on; the answer once they are known. */
static void
bf_eval(struct bf *b, struct bsess *s)
{
	const struct cond	*c;
	int			 m;

	for (; s->ci < b->nconds; s->ci++) {
		c = &b->conds[s->ci];
		if ((m = cond_match(b, s, c)) == MSD_PENDING)
			return;
		if (m == MSD_TEMPFAIL) {
			b->host->log(MSD_LOG_WARNING, "filter %s: table %s "
			    "failed; answering 451", b->name, c->table);
			answer(b, s, MSD_FV_REJECT, BF_TEMPFAIL);
			return;
		}
		if (m == c->neg) {
			answer(b, s, MSD_FV_PROCEED, NULL);
			return;
		}
	}
	answer(b, s, verdict_of[b->decision], b->text);
}

static void
bf_request(void *inst, uint64_t sid, uint64_t token, uint32_t phase,
    const char *param)
{
	struct bf	*b = inst;
	struct bsess	*s = sess_find(b, sid, 1);

	if (s == NULL) {
		b->host->log(MSD_LOG_ERR, "filter %s: out of memory", b->name);
		b->host->filter_result(b->self, sid, token, MSD_FV_REJECT,
		    BF_TEMPFAIL);
		return;
	}
	/* A request the host gave up on (timeout) is superseded. */
	if (s->pend != NULL) {
		s->pend->s = NULL;
		s->pend = NULL;
	}
	s->have_tres = 0;
	s->ci = s->si = 0;
	s->token = token;
	if (phase == MSD_FP_HELO || phase == MSD_FP_EHLO)
		set(&s->helo, param);
	else if (phase == MSD_FP_MAIL_FROM)
		set(&s->mail_from, param);
	set(&s->param, param);
	bf_eval(b, s);
}

/* -------------------------------------------------------------- module */

static void
bf_close(void *inst)
{
	struct bf	*b = inst;
	size_t		 i;

	if (b == NULL)
		return;
	for (i = 0; i < BF_HASH; i++)
		while (b->sessions[i] != NULL)
			sess_free(b, b->sessions[i]);
	for (i = 0; i < b->nconds; i++)
		free(b->conds[i].table);
	free(b->conds);
	free(b->text);
	free(b->name);
	free(b);
}

static int
bf_open(const struct msd_host *host, msd_filter *self, const char *name,
    uint32_t argc, const char *const *argv, void **inst, msd_result *err)
{
	struct bf	*b;
	uint64_t	 events;
	int		 rc;

	if (host->size < MSD_HOST_SIZE || host->table_match == NULL)
		return bf_err(host, err, "the host has no filter services");
	if ((b = calloc(1, sizeof(*b))) == NULL ||
	    (b->name = dup(name)) == NULL) {
		free(b);
		return bf_err(host, err, "out of memory");
	}
	b->host = host;
	b->self = self;
	if ((rc = parse_args(b, argc, argv, err)) != MSD_OK) {
		bf_close(b);
		return rc;
	}
	events = 1ULL << MSD_FE_LINK_CONNECT | 1ULL << MSD_FE_LINK_IDENTIFY |
	    1ULL << MSD_FE_LINK_AUTH | 1ULL << MSD_FE_TX_MAIL |
	    1ULL << MSD_FE_TX_RESET;
	host->filter_register(self, events, 1ULL << b->phase);
	*inst = b;
	return MSD_OK;
}

static const struct msd_filter_ops bf_ops = {
	.size = MSD_FILTER_OPS_SIZE,
	.open = bf_open,
	.close = bf_close,
	.report = bf_report,
	.request = bf_request,
	.session_end = bf_session_end,
};

static const struct msd_module bf_module = {
	.magic = MSD_MAGIC,
	.abi_major = MSD_ABI_MAJOR,
	.abi_minor = MSD_ABI_TARGET_MINOR,
	.size = MSD_MODULE_SIZE,
	.flags = MSD_MF_BUILD,
	.kind = MSD_KIND_FILTER,
	.name = "builtin",
	.version = "1.0",
	.ops = &bf_ops,
	.description = "smtpd.conf phase/match/decision filters",
};

MSD_MODULE(builtin)
{
	(void)host_major;
	(void)host_minor;
	return &bf_module;
}
