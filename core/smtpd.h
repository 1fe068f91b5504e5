/*
 * smtpd.h - the daemon's internal header: one section per subsystem file.
 * Nothing here is visible to modules; they see only sdk/modsmtpd.h.
 */
#ifndef SMTPD_H
#define SMTPD_H

#include <sys/types.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <netinet/in.h>

#include <event.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "modsmtpd.h"

#define SMTPD_NAME		"modsmtpd"
#define SMTPD_BANNER_NAME	"ESMTP OpenSMTPD"	/* log tools key on it */

/* Limits and defaults of smtpd.conf(5). */
#define SMTPD_MAXLINESIZE	65535		/* body line, incl. CRLF */
#define SMTPD_MAXCMDSIZE	2048		/* command line (LINE_MAX) */
#define SMTPD_SESSION_TIMEOUT	300		/* seconds, every state */
#define DEFAULT_MAX_RCPT	1000
#define DEFAULT_MAX_MAILS	100
#define DEFAULT_MAX_AUTH_FAILURES 3	/* per session, then 421 */
#define DEFAULT_MAX_MSGSIZE	(35UL * 1024 * 1024)
#define DEFAULT_FILTER_TIMEOUT	240		/* a filter's answer, seconds */
#define DEFAULT_FILTER_PROTOCOL	"0.6"		/* what OpenSMTPD 6.8 says */
#define DEFAULT_EXPIRE		(4 * 24 * 3600)	/* queue ttl 4d */
#define MAX_RECEIVED		100		/* loop detection */
#define IPC_MAX_MSG		(1024 * 1024)	/* one framed message */
#define IPC_CHUNK		(256 * 1024)	/* fill frames up to this */

#define SMTPD_MAXADDR		512		/* local@domain, with brackets */

/* ---------------------------------------------------------------- config */

/*
 * The configuration model: everything smtpd.conf(5) can say, in either
 * grammar (parse.c reads both; config_print.c writes the current one).
 * Values the file did not set hold the documented defaults, so two files
 * that mean the same thing load to equal models and print identically.
 * Every object remembers file:line for messages.
 */

#define DEFAULT_WARN_INTERVAL	(4 * 3600)	/* bounce warn-interval 4h */
#define DEFAULT_SRS_TTL		(4 * 24 * 3600)
#define DEFAULT_MAX_DEFERRED	100
#define DEFAULT_SUBADDR_DELIM	'+'
#define MAX_WARN_INTERVALS	4

/* Table services of table(5), as bits: a rule asks for one at a time. */
enum table_service {
	K_NONE		= 0x0000,
	K_ALIAS		= 0x0001,	/* user -> expansion list */
	K_DOMAIN	= 0x0002,	/* domain (with *. wildcards) */
	K_CREDENTIALS	= 0x0004,	/* user -> crypt(3) hash */
	K_NETADDR	= 0x0008,	/* address or CIDR network */
	K_USERINFO	= 0x0010,	/* user -> uid:gid:home */
	K_SOURCE	= 0x0020,	/* list of source addresses */
	K_MAILADDR	= 0x0040,	/* user@domain, @domain or user */
	K_ADDRNAME	= 0x0080,	/* address -> hostname */
	K_MAILADDRMAP	= 0x0100,	/* user -> list of mailaddr */
	K_RELAYHOST	= 0x0200,	/* domain -> relay URL */
	K_STRING	= 0x0400,	/* exact string */
	K_REGEX		= 0x0800,	/* POSIX extended regex list */
};

enum table_kind {
	TABLE_LIST,		/* { a, b, c }, or a literal in a rule */
	TABLE_MAP,		/* { k = v, ... } */
};

struct table_entry {
	char		*key;
	char		*value;		/* NULL in a list */
};

struct table_backend;			/* table.c */

struct table {
	TAILQ_ENTRY(table)	 entry;
	char			*name;
	/*
	 * "static" for inline tables; otherwise the backend type as written
	 * ("file", "db", ...) or implied (a path alone means "file").
	 */
	char			*type;
	char			*config;	/* path / backend config; NULL: static */
	enum table_kind		 kind;		/* static tables */
	struct table_entry	*entries;	/* static tables */
	size_t			 nentries;
	/*
	 * Made by the parser for a literal in a rule or option (`for domain
	 * example.org`): printed back as that literal, never by name.
	 */
	int			 anon;
	struct table_backend	*backend;	/* table.c, NULL until opened */
	char			*file;		/* where it was declared */
	int			 line;
};
TAILQ_HEAD(tablelist, table);

struct pki {
	TAILQ_ENTRY(pki)	 entry;
	char			*name;
	char			*cert;		/* file names, absolute */
	char			*key;
	enum { DHE_NONE, DHE_LEGACY, DHE_AUTO } dhe;
	char			*file;
	int			 line;
};
TAILQ_HEAD(pkilist, pki);

struct ca {
	TAILQ_ENTRY(ca)		 entry;
	char			*name;
	char			*cert;
	char			*file;
	int			 line;
};
TAILQ_HEAD(calist, ca);

/* Listener options (struct listen_conf.flags). */
#define LO_TLS			0x0001	/* STARTTLS offered */
#define LO_TLS_REQUIRE		0x0002	/* ... and required */
#define LO_TLS_VERIFY		0x0004	/* ... with a client certificate */
#define LO_SMTPS		0x0008
#define LO_AUTH			0x0010	/* required before MAIL */
#define LO_AUTH_OPTIONAL	0x0020
#define LO_MASK_SRC		0x0040
#define LO_NO_DSN		0x0080
#define LO_PROXY_V2		0x0100
#define LO_RECEIVED_AUTH	0x0200
#define LO_MASQUERADE		0x0400	/* senders <t> masquerade */

#define LISTEN_INET4		0x01
#define LISTEN_INET6		0x02

#define LISTEN_MAX_PKI		16

/* One `listen on` directive; each address it names is a struct listener. */
struct listen_conf {
	TAILQ_ENTRY(listen_conf) entry;
	int			 socket;	/* `listen on socket` */
	char			*on;		/* interface/group/address/name */
	int			 family;	/* 0, LISTEN_INET4, LISTEN_INET6 */
	int			 port;		/* 0: the default (25, 465) */
	uint32_t		 flags;		/* LO_* */
	char			*tag;
	char			*hostname;
	struct table		*hostnames;
	struct table		*auth;		/* auth[-optional] <t> */
	struct table		*senders;
	char			*pki[LISTEN_MAX_PKI];
	size_t			 npki;
	char			*ca;
	char			*filter;	/* filter or chain name */
	char			*ciphers;
	char			*protocols;
	char			*file;
	int			 line;
	/* smtp_tls.c: the libtls server context (struct tls), or NULL. */
	void			*tls;
};
TAILQ_HEAD(listenconflist, listen_conf);

struct listener {
	TAILQ_ENTRY(listener)	 entry;
	const struct listen_conf *lc;
	struct sockaddr_storage	 ss;		/* address and port */
	socklen_t		 sslen;
	int			 fd;		/* -1 until bound */
	void			*ev;		/* smtp role: accept event */
};
TAILQ_HEAD(listenerlist, listener);

enum action_method {
	A_MBOX,
	A_MAILDIR,
	A_LMTP,
	A_MDA,
	A_RELAY,
	A_EXPAND_ONLY,
	A_FORWARD_ONLY,
	A_NMETHODS
};

/* Relay `tls` option. */
#define RELAY_TLS_DEFAULT	0	/* opportunistic */
#define RELAY_TLS_VERIFY	1	/* `tls`: required and verified */
#define RELAY_TLS_NO_VERIFY	2	/* `tls no-verify` */

struct action {
	TAILQ_ENTRY(action)	 entry;
	char			*name;
	enum action_method	 method;
	/* method arguments */
	char			*path;		/* maildir; NULL: ~/Maildir */
	int			 junk;		/* maildir junk */
	char			*lmtp_dest;	/* host:port or /socket */
	int			 lmtp_rcpt_to;
	char			*mda_cmd;
	/* local options */
	struct table		*alias;
	struct table		*virtual;
	struct table		*userbase;
	char			*user;		/* NULL: the recipient */
	char			*wrapper;	/* `mda wrapper` name */
	/* relay options */
	int			 backup;
	char			*backup_mx;	/* backup mx NAME */
	char			*helo;
	struct table		*helo_src;
	struct table		*domain;
	char			*host;		/* relay URL */
	int			 tls;		/* RELAY_TLS_* */
	struct table		*auth;
	char			*mail_from;
	struct table		*src;
	char			*pki;
	char			*ca;
	int			 srs;
	char			*protocols;
	char			*ciphers;
	/* smtp role: TLS client configs (smtp_tls.c), verifying or not */
	void			*tls_verify;
	void			*tls_noverify;
	/* both */
	uint32_t		 ttl;		/* seconds; 0: `queue ttl` */
	char			*file;
	int			 line;
};
TAILQ_HEAD(actionlist, action);

/*
 * A match condition.  Each kind appears at most once per rule; `set`
 * says whether the rule has it.  table NULL means the form without an
 * argument (`from auth`, `from rdns`, `auth`, `tls`...).
 */
enum cond_kind {
	/* from ... (exactly one; `from local` when omitted) */
	C_FROM_ANY,
	C_FROM_LOCAL,
	C_FROM_SOCKET,
	C_FROM_SRC,		/* K_NETADDR, or K_REGEX on the text */
	C_FROM_AUTH,		/* K_STRING user, or K_REGEX */
	C_FROM_RDNS,		/* K_DOMAIN, or K_REGEX */
	C_FROM_MAIL_FROM,	/* K_MAILADDR, or K_REGEX */
	/* for ... (exactly one; `for local` when omitted) */
	C_FOR_ANY,
	C_FOR_LOCAL,
	C_FOR_DOMAIN,		/* K_DOMAIN, or K_REGEX */
	C_FOR_RCPT_TO,		/* K_MAILADDR, or K_REGEX */
	/* transaction options */
	C_AUTH,
	C_HELO,			/* K_DOMAIN, or K_REGEX */
	C_MAIL_FROM,
	C_RCPT_TO,
	C_TAG,			/* K_STRING, or K_REGEX */
	C_TLS,
	C_NKINDS
};

struct cond {
	enum cond_kind		 kind;
	int			 neg;		/* `!` */
	int			 regex;		/* `regex` keyword */
	struct table		*table;		/* NULL: no argument */
};

/* Slots of struct rule.conds: one per group below. */
enum cond_slot {
	SLOT_FROM,
	SLOT_FOR,
	SLOT_AUTH,
	SLOT_HELO,
	SLOT_MAIL_FROM,
	SLOT_RCPT_TO,
	SLOT_TAG,
	SLOT_TLS,
	SLOT_NSLOTS
};

struct rule {
	TAILQ_ENTRY(rule)	 entry;
	int			 reject;	/* `match ... reject` */
	struct cond		 conds[SLOT_NSLOTS];
	int			 set[SLOT_NSLOTS];	/* from/for always set */
	struct action		*action;	/* NULL when reject */
	char			*file;
	int			 line;
};
TAILQ_HEAD(rulelist, rule);

enum filter_type {
	F_BUILTIN,		/* phase ... match ... decision */
	F_PROC,			/* proc NAME */
	F_PROC_EXEC,		/* proc-exec "cmd" */
	F_CHAIN,		/* chain { a, b } */
	F_MODULE,		/* module NAME [ARG ...] */
};

enum filter_phase {
	FP_CONNECT,
	FP_HELO,
	FP_EHLO,
	FP_MAIL_FROM,
	FP_RCPT_TO,
	FP_DATA,
	FP_COMMIT,
	FP_NPHASES
};

enum filter_cond_kind {
	FC_FCRDNS,
	FC_RDNS,		/* table optional */
	FC_SRC,
	FC_HELO,
	FC_AUTH,		/* table optional */
	FC_MAIL_FROM,
	FC_RCPT_TO,
	FC_NKINDS
};

struct filter_cond {
	enum filter_cond_kind	 kind;
	int			 neg;
	int			 regex;
	struct table		*table;
};

enum filter_decision {
	FD_BYPASS,
	FD_DISCONNECT,		/* message */
	FD_JUNK,
	FD_REJECT,		/* message */
	FD_REWRITE,		/* value */
	FD_REPORT,		/* value */
};

struct filter {
	TAILQ_ENTRY(filter)	 entry;
	char			*name;
	enum filter_type	 type;
	int			 anon;		/* `listen on ... filter { }` */
	/* F_BUILTIN */
	enum filter_phase	 phase;
	struct filter_cond	*conds;
	size_t			 nconds;
	enum filter_decision	 decision;
	char			*message;	/* disconnect/reject/rewrite */
	/* F_PROC */
	char			*proc;
	/* F_PROC_EXEC (and struct proc) */
	char			*command;
	char			*user;
	char			*group;
	char			*chroot;
	char			*protocol;	/* `protocol V`; NULL: global */
	uint32_t		 timeout;	/* `timeout D`; 0: global */
	/* F_CHAIN */
	char			**chain;
	size_t			 nchain;
	/* F_MODULE */
	char			*module;
	char			**args;
	size_t			 nargs;
	char			*file;
	int			 line;
};
TAILQ_HEAD(filterlist, filter);

/* `proc NAME "command" [user U] [group G] [chroot D]` */
struct proc {
	TAILQ_ENTRY(proc)	 entry;
	char			*name;
	char			*command;
	char			*user;
	char			*group;
	char			*chroot;
	char			*protocol;	/* NULL: smtp filter-protocol */
	uint32_t		 timeout;	/* 0: smtp filter-timeout */
	char			*file;
	int			 line;
};
TAILQ_HEAD(proclist, proc);

/* `mda wrapper NAME "command"` */
struct wrapper {
	TAILQ_ENTRY(wrapper)	 entry;
	char			*name;
	char			*command;
	char			*file;
	int			 line;
};
TAILQ_HEAD(wrapperlist, wrapper);

struct config {
	char			*hostname;	/* server name (smtpname) */
	char			*module_path;	/* `module-path`, may be NULL */
	char			*admd;		/* `admd`; NULL: hostname */
	/* smtp */
	size_t			 max_message_size;
	size_t			 max_rcpt;
	size_t			 max_mails;
	size_t			 max_auth_failures;
	char			*smtp_ciphers;
	char			*pam_service;	/* NULL: "smtpd" */
	char			 subaddr_delim;
	/* proc filters: smtp filter-protocol / filter-timeout */
	char			*filter_protocol;	/* NULL: "0.6" */
	uint32_t		 filter_timeout;	/* seconds */
	/* queue */
	int			 queue_compression;
	int			 queue_encryption;
	/* What `smtpd -n -v` prints for a key; refused at start. */
#define QUEUE_KEY_HIDDEN	"(key not shown)"
	char			*queue_key;	/* NULL: ask; "stdin"; the key */
	char			*queue_key_file;	/* `queue encryption` */
	int			 queue_key_line;
	uint32_t		 queue_ttl;	/* seconds */
	/* bounce / mta */
	uint32_t		 warn_interval[MAX_WARN_INTERVALS];
	size_t			 nwarn_interval;
	size_t			 max_deferred;
	/* srs */
	char			*srs_key;
	char			*srs_key_backup;
	uint32_t		 srs_ttl;
	/* `listen on socket`; NULL: the default socket listener */
	struct listen_conf	*socket_listener;
	struct tablelist	 tables;
	struct pkilist		 pkis;
	struct calist		 cas;
	struct listenconflist	 listen_confs;
	struct listenerlist	 listeners;	/* one per bound address */
	struct actionlist	 actions;
	struct rulelist		 rules;
	struct filterlist	 filters;
	struct proclist		 procs;
	struct wrapperlist	 wrappers;
	/* Files in the old (pre-6.4) grammar: printed with -n -v. */
	int			 legacy;
};

/* What ruleset_match() looks at for one recipient. */
struct match_ctx {
	int			 local;		/* came over the local socket */
	const struct sockaddr_storage *src;	/* NULL for the local socket */
	const char		*tag;		/* listener tag or NULL */
	const char		*helo;		/* HELO/EHLO name or NULL */
	const char		*auth;		/* authenticated user or NULL */
	int			 tls;		/* session is in TLS */
	const char		*rdns;		/* reverse name or NULL */
	const char		*sender;	/* MAIL FROM, "" for <> */
	const char		*rcpt;		/* RCPT TO address */
};

/* parse.c: loads FILE with -D macros; on error prints file:line and NULL. */
struct macro {
	const char	*name;
	const char	*value;
};
struct config	*config_load(const char *path, const struct macro *, size_t);
void		 config_free(struct config *);
struct table	*config_table(struct config *, const char *name);
struct action	*config_action(struct config *, const char *name);
struct wrapper	*config_wrapper_find(const struct config *, const char *name);

/* config_print.c: the model in the current grammar; loads to the same. */
void		 config_print(FILE *, const struct config *);

/* ruleset.c: first matching rule or NULL (NULL means reject). */
const struct rule *ruleset_match(const struct config *,
		    const struct match_ctx *, int *tempfail);
int		 domain_is_local(const struct config *, const char *domain);

/* table.c: the table layer. */
/* An address or a network in a fixed, comparable form. */
struct netaddr {
	int	 af;
	uint8_t	 addr[16];
	int	 bits;			/* prefix length */
};
/*
 * "192.0.2.1", "10/8", "2001:db8::/32", "[IPv6:::1]" as OpenSMTPD's
 * netaddr tables read them; -1 when s is none of these.
 */
int		 netaddr_parse(const char *s, struct netaddr *);
/* Opens every table's backend (file tables are read here); -1 on error
 * after printing "file:line: ..." for the first bad entry. */
int		 table_open_all(struct config *);
void		 table_close(struct table *);
/*
 * Reads every table again (or the one named), keeping the old contents
 * on error; the number that failed.
 */
int		 table_update_all(struct config *, const char *name);
/*
 * In the lookup role after fork: its own lookup-style backends, or a
 * worker process (table_async.c) for those that may block; 0 or -1.
 */
int		 table_reopen_lookups(struct config *);
/* Helpers of table_async.c's workers. */
int		 table_reopen_one(struct table *);
int		 table_update_table(struct table *);
void		 table_detach_worker(struct table *);

/*
 * table_async.c: seconds a blocking backend may take for one answer
 * (modules read it as the host's "table-timeout").
 */
#define TABLE_TIMEOUT	30
#define TABLE_TIMEOUT_STR "30"
struct table_worker;
struct table_cache;
struct table_worker *table_async_spawn(struct table *);
void		 table_async_update(struct table_worker *);
/* What a query to a worker asks: table_match, table_lookup, table_fetch. */
enum tq_op { TQ_MATCH, TQ_LOOKUP, TQ_FETCH };
int		 table_async_query(struct table_worker *, enum tq_op,
		    enum table_service, const char *key, char *value,
		    size_t len);
/*
 * The answers one walk (a recipient's expansion) has got.  While a cache
 * is in use, a query to a worker table that is not answered yet fails
 * with table_cache_blocked() set; resume(arg) runs once the answers are
 * in, and the walk then starts over.
 */
struct table_cache *table_cache_new(void (*resume)(void *), void *arg);
void		 table_cache_free(struct table_cache *);
void		 table_cache_use(struct table_cache *);
int		 table_cache_blocked(const struct table_cache *);
int		 table_cache_pending(const struct table_cache *);
/* table_lookup() through c for a single query; TABLE_BLOCKED: wait. */
#define TABLE_BLOCKED	(-2)
int		 table_cache_lookup(struct table_cache *, struct table *,
		    enum table_service, const char *key, char *value,
		    size_t len);
/* 1: key matches an entry for the service, 0: no, -1: temporary failure. */
int		 table_match(struct table *, enum table_service, const char *key);
/*
 * msd_host.table_match: table NAME of the configuration, MSD_OK,
 * MSD_NOTFOUND, MSD_TEMPFAIL, or MSD_PENDING and done(arg, result) later.
 */
int		 table_match_module(const char *name, uint32_t service,
		    const char *key, void (*done)(void *, int), void *arg);
/* 1: found, value copied; 0: not found; -1: temporary failure / too long. */
int		 table_lookup(struct table *, enum table_service, const char *key,
		    char *value, size_t len);
/* lookup.c: our host name for one of our addresses, from t. */
int		 addrname_lookup(struct table_cache *, struct table *,
		    const char *addr, char *name, size_t len);
/* The next entry of a round-robin service; nth names it in a cache. */
int		 table_fetch(struct table *, enum table_service, unsigned nth,
		    char *value, size_t len);
int		 table_cache_fetch(struct table_cache *, struct table *,
		    enum table_service, unsigned nth, char *value,
		    size_t len);
const char	*table_service_name(enum table_service);
/* A mail address against a table(5) mailaddr entry (user, @dom, u@dom). */
int		 mailaddr_match(const char *addr, const char *entry);
/* One line of a table(5) text file, split in place (makemap reads them too). */
enum table_line {
	TLINE_SKIP,		/* blank or comment */
	TLINE_LIST,		/* the "# @list" comment */
	TLINE_ENTRY,		/* *key, and *sep where the key ends */
	TLINE_BAD,		/* a '[' key without ']': *key for the error */
};
enum table_line	 table_line(char *line, char **key, char **sep);
/* Ends a map line's key at sep; the value, "" when there is none. */
char		*table_line_value(char *sep);

/* A delivery user: from the userbase table (userinfo), else the system. */
struct userinfo {
	char	 name[64];
	char	 home[PATH_MAX];
	uid_t	 uid;
	gid_t	 gid;
};
/* 1: found, 0: no such user, -1: temporary failure. */
int		 user_lookup(struct table *userbase, const char *name,
		    struct userinfo *);
/* 1 if entry is valid for the service (a CIDR network, a regex...). */
int		 table_check_entry(enum table_service, const char *entry);

/*
 * bounce.c: RFC 3464 delivery status notifications.  bounce_write() writes
 * the whole notification (headers, human-readable part, the
 * message/delivery-status part, then the original message or its headers)
 * to out, with LF line ends as the spool keeps them.
 */
struct bounce_rcpt {
	const char	*rcpt;		/* original recipient (RCPT TO / ORCPT) */
	const char	*dest;		/* final recipient after expansion */
	const char	*status;	/* enhanced status code, "5.1.1" */
	const char	*diag;		/* "550 5.1.1 user unknown", or text */
	int		 permanent;	/* 1: Action failed, 0: delayed */
	/* "delivered", "relayed", "expanded"; NULL (or other): permanent. */
	const char	*action;
	/* DSN ORCPT "addr-type;address": the Original-Recipient, or NULL. */
	const char	*orcpt;
	int64_t		 retry_until;	/* delayed: Will-Retry-Until, or 0 */
};

struct bounce_info {
	const char	*hostname;	/* the reporting MTA */
	const char	*sender;	/* original MAIL FROM: the bounce goes there */
	uint32_t	 msgid;		/* the original message */
	int64_t		 arrival;	/* when it was queued */
	const char	*src;		/* client address text, may be "" */
	const char	*helo;		/* client HELO name, may be "" */
	const char	*envid;		/* DSN ENVID, NULL when none */
	int		 headers_only;	/* DSN RET=HDRS */
	const char	*note;		/* a paragraph for part 1, or NULL */
};

/* 0, or -1 with errno set (write error, unreadable message). */
int	 bounce_write(FILE *out, const struct bounce_info *,
	    const struct bounce_rcpt *, size_t nrcpt, int msgfd, time_t now);

/* expand.c: format specifiers of smtpd.conf(5) ("%{rcpt.domain[0:-4]}"). */
struct expand_ctx {
	const char	*sender;	/* "" for <> */
	const char	*rcpt;
	const char	*dest;
	const char	*user;		/* user.username */
	const char	*directory;	/* user.directory */
	const char	*mbox_from;
	const char	*mda;		/* only for mda wrappers */
	char		 subaddr_delim;	/* for :strip */
};
/*
 * Expands in into out; -1 with *err set to a static reason on an unknown
 * token, a bad slice or modifier, or when out is too small.
 */
int		 expand_format(const char *in, const struct expand_ctx *,
		    char *out, size_t outlen, const char **err);

/*
 * srs.c: the Sender Rewriting Scheme as OpenSMTPD writes it.  Addresses
 * longer than OpenSMTPD's SRS_ADDR_MAX - 1 are never made (the sender is
 * then sent as it is), nor decoded.
 */
#define SRS_ADDR_MAX	256
struct srs_keys {
	const char	*key;		/* `srs key` */
	const char	*backup;	/* `srs key backup`, or NULL */
	uint32_t	 ttl;		/* `srs ttl`, seconds (counted in days) */
};
/*
 * The SRS0 address of sender in domain at time now; of an SRS0 sender
 * its SRS1, of an SRS1 sender the SRS1 rehashed for domain.  0, or -1
 * when the sender is no address or the result would be too long.
 */
int		 srs_encode(const char *key, const char *sender,
		    const char *domain, time_t now, char *out, size_t outlen);
/*
 * rcpt checked with the key, then the backup key, and its day stamp
 * against the ttl: 1 and the address it stands for in out (for SRS1, the
 * SRS0 address at the first forwarder); 0 when rcpt is no SRS address;
 * -1 with a reason in *why when it is one but not valid.
 */
int		 srs_decode(const struct srs_keys *, const char *rcpt,
		    time_t now, char *out, size_t outlen, const char **why);
/*
 * The relay's MAIL FROM for a task (smtp role): the SRS address when the
 * action says `srs` and the first recipient is a forward (rcpt, the
 * address received, differs from dest); otherwise sender.  buf holds it.
 */
const char	*srs_mail_from(const struct action *, const char *sender,
		    const char *rcpt, const char *dest, char *buf, size_t len);
/*
 * The lookup role, for a bounce (MAIL FROM:<>) to rcpt: 1 and the
 * address to deliver to in out when rcpt is a valid SRS address under
 * `srs key`; 0 otherwise (an invalid one is logged and routed as it is).
 */
int		 srs_bounce_rcpt(const char *rcpt, char *out, size_t outlen);

/* ------------------------------------------------------------------- log */

void	log_init(int foreground, int verbose);
void	log_setproc(const char *name);
void	log_warn(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_warnx(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_info(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_debug(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_vlog(int pri, const char *, va_list) __attribute__((format(printf, 2, 0)));
void	fatal(const char *, ...) __attribute__((format(printf, 1, 2), noreturn));
void	fatalx(const char *, ...) __attribute__((format(printf, 1, 2), noreturn));
extern int log_verbose;

/* ------------------------------------------------------------------ util */

void	*xmalloc(size_t);
void	*xcalloc(size_t, size_t);
void	*xreallocarray(void *, size_t, size_t);
char	*xstrdup(const char *);
char	*xstrndup(const char *, size_t);
int	 xasprintf(char **, const char *, ...) __attribute__((format(printf, 2, 3)));
size_t	 msd_strlcpy(char *, const char *, size_t);
size_t	 msd_strlcat(char *, const char *, size_t);
const char *ss_to_text(const struct sockaddr_storage *);
socklen_t ss_len(const struct sockaddr_storage *);
int	 ss_is_loopback(const struct sockaddr_storage *);
/* 1 if s is an IPv4 or IPv6 literal (v6 may carry %scope), port 0. */
int	 addr_literal(const char *s, struct sockaddr_storage *);
int	 mkdir_p(const char *path, mode_t mode);
int	 fsync_dir(const char *path);
uint32_t msd_random(void);
/* Splits user@domain; returns -1 on syntax error.  Sizes include NUL. */
int	 addr_split(const char *addr, char *user, size_t ulen,
	    char *domain, size_t dlen);
/* Lowercases ASCII in place. */
void	 lowercase(char *);
/* A stream socket connected to a UNIX socket path; -1 with errno set. */
int	 unix_connect(const char *path);
/* The daemon's spool for the tools: $MODSMTPD_SPOOL, else SPOOLDIR. */
const char *default_spool(void);
/* A program next to the running one ("sendmail"); 0 or -1. */
int	 program_path(const char *name, char *out, size_t len);
void	 subaddr_strip(char *user, char delim);
/*
 * A relay URL, scheme://[label@]host[:port] (smtpd.conf(5) `host`).  The
 * port defaults by scheme: 25, or 465 for smtps; lmtp must name one.
 */
enum relay_scheme {
	RELAY_SMTP,		/* STARTTLS when offered */
	RELAY_SMTP_TLS,		/* STARTTLS required */
	RELAY_SMTP_NOTLS,	/* never TLS */
	RELAY_SMTPS,		/* TLS from the first byte */
	RELAY_LMTP,
};
struct relay_url {
	enum relay_scheme	 scheme;
	char			 label[128];
	char			 host[256];
	uint16_t		 port;
};
/* What relay_url_parse() found wrong. */
enum relay_url_error {
	RELAY_URL_OK,
	RELAY_URL_SCHEME,	/* not one of the five */
	RELAY_URL_HOST,		/* none, too long, or an unclosed '[' */
	RELAY_URL_PORT,		/* not 1..65535 */
	RELAY_URL_LMTP_PORT,	/* lmtp without one */
	RELAY_URL_LABEL,	/* too long */
};
enum relay_url_error relay_url_parse(const char *, struct relay_url *);
const char *relay_scheme_name(enum relay_scheme);
/* "1h2m3s" for a number of seconds, into buf. */
const char *duration_text(time_t, char *buf, size_t len);
/* RFC 4648 base64; the output length or -1 (bad input, no room). */
int	 base64_encode(const void *, size_t, char *out, size_t outlen);
int	 base64_decode(const char *, unsigned char *out, size_t outlen);
/*
 * RFC 3461 xtext (ENVID, ORCPT): the output length, or -1 on bad input
 * (decode: not xtext, or a NUL byte) or when out is too small.
 */
int	 xtext_decode(const char *, char *out, size_t outlen);
int	 xtext_encode(const char *, char *out, size_t outlen);

/* ------------------------------------------------------------------- ipc */

/*
 * Framed, typed messages over a socketpair.  A frame is a header followed
 * by len bytes; at most one descriptor rides along (IPC_F_FD).  Payloads
 * are built with ipc_put_* and read with ipc_get_*, which check lengths:
 * a malformed message is a fatal bug in the peer, never undefined behaviour.
 */
enum ipc_type {
	IMSG_NONE,
	/* smtp -> lookup -> smtp */
	IMSG_LKA_RCPT,			/* reqid, match ctx, rcpt */
	IMSG_LKA_RCPT_RESULT,		/* reqid, status, text, n, xresult... */
	IMSG_LKA_FORWARD,		/* lookup -> parent: id, user, home, uid */
	IMSG_LKA_FORWARD_RESULT,	/* id, FORWARD_* [+fd] */
	IMSG_LKA_UPDATE_TABLES,		/* parent -> lookup: name|NULL (all) */
	/* lookup -> a table's worker -> lookup (table_async.c) */
	IMSG_TBL_QUERY,			/* id, op, service, key */
	IMSG_TBL_ANSWER,		/* id, result + 1, value */
	IMSG_TBL_UPDATE,		/* SIGHUP */
	/* smtp -> lookup (-> parent -> lookup) -> smtp (auth.c) */
	IMSG_AUTH,			/* reqid, table|NULL, user, password */
	IMSG_AUTH_RESULT,		/* reqid, LKA_* */
	IMSG_AUTH_SYSTEM,		/* lookup -> parent: id, user, password */
	IMSG_AUTH_SYSTEM_RESULT,	/* id, LKA_* */
	IMSG_AUTH_SENDERS,		/* smtp -> lookup: reqid, table, user,
					   sender; answered by IMSG_AUTH_RESULT */
	IMSG_LKA_HOSTNAME,		/* smtp -> lookup: reqid, table,
					   local address (`hostnames <t>`) */
	IMSG_LKA_HOSTNAME_RESULT,	/* reqid, LKA_*, name or NULL */
	/* smtp -> queue -> smtp */
	IMSG_QUEUE_CREATE,		/* reqid */
	IMSG_QUEUE_CREATE_RESULT,	/* reqid, status, msgid [+fd] */
	IMSG_QUEUE_COMMIT,		/* reqid, msgid, n; then frames of: */
	IMSG_QUEUE_ENVELOPES,		/* reqid, envelope JSON... */
	IMSG_QUEUE_COMMIT_RESULT,	/* reqid, status */
	IMSG_QUEUE_ROLLBACK,		/* msgid */
	/* queue -> parent -> queue */
	IMSG_MDA_DELIVER,		/* evpid, envelope JSON, +fd */
	IMSG_MDA_RESULT,		/* evpid, status, text */
	IMSG_MDA_WORK,			/* parent -> worker: evpid, JSON,
					   arg, lmtp rcpt, junk, +fd */
	/* control */
	IMSG_CTL_SHUTDOWN,		/* parent -> queue: all results sent */
	IMSG_CTL_LIST,			/* control -> queue: reqid */
	IMSG_CTL_LIST_DATA,		/* reqid, queue lines... */
	IMSG_CTL_LIST_END,		/* reqid */
	IMSG_CTL_UPDATE_TABLE,		/* control -> parent: reqid, name */
	IMSG_CTL_UPDATE_RESULT,		/* reqid, answer line */
	/* proc filters (filter_exec.c, filter.c, smtp_filter.c) */
	IMSG_FILTER_PROC,		/* parent -> lookup: name, +fd */
	IMSG_FILTER_RESTART,		/* lookup -> parent: name, reason */
	IMSG_FILTER_BEGIN,		/* smtp -> lookup: sid, chain, link */
	IMSG_FILTER_REPORT,		/* sid, event, n, strings... */
	IMSG_FILTER_PHASE,		/* sid, phase, param */
	IMSG_FILTER_DATA,		/* both ways: sid, lines */
	IMSG_FILTER_END,		/* smtp -> lookup: sid */
	IMSG_FILTER_RESULT,		/* lookup -> smtp: sid, decision, text */
	IMSG_MTA_ROUTE,			/* smtp -> lookup: reqid, action, domain */
	IMSG_MTA_ROUTE_RESULT,		/* reqid, status, text, scheme, auth,
					   n, (pref, name, sockaddr, helo)...,
					   nsrc, (sockaddr, helo)... */
	IMSG_MTA_DELIVER,		/* queue -> smtp: n, envelope JSON...,
					   +fd of their message */
	IMSG_MTA_RESULT,		/* smtp -> queue: evpid, status, text */
	IMSG_DNS_PTR,			/* smtp -> lookup: sid, sockaddr */
	IMSG_DNS_PTR_RESULT,		/* sid, name|NULL, fcrdns */
	IMSG_MAX
};

#define IPC_F_FD	0x0001

struct ipc_hdr {
	uint32_t	type;
	uint32_t	len;		/* payload bytes after the header */
	uint32_t	flags;
	uint32_t	pid;		/* sender */
};

struct ipc_msg {
	uint32_t	 type;
	int		 fd;		/* -1 when none; the handler owns it */
	const uint8_t	*data;
	size_t		 len;
	size_t		 off;		/* read cursor for ipc_get_* */
};

struct ipc_out;
struct ipc;
typedef void ipc_handler(struct ipc *, struct ipc_msg *, void *arg);

struct ipc	*ipc_new(int fd, const char *peer, ipc_handler *, void *arg);
void		 ipc_free(struct ipc *);
const char	*ipc_peer(struct ipc *);
/* Build and send: ipc_begin, ipc_put_*, ipc_end (fd -1 for none). */
struct ipc_out	*ipc_begin(struct ipc *, uint32_t type);
void		 ipc_put_u32(struct ipc_out *, uint32_t);
void		 ipc_put_u64(struct ipc_out *, uint64_t);
void		 ipc_put_str(struct ipc_out *, const char *);	/* NULL ok */
void		 ipc_put_data(struct ipc_out *, const void *, size_t);
size_t		 ipc_out_len(const struct ipc_out *);
void		 ipc_end(struct ipc_out *, int fd);
int		 ipc_flush_sync(struct ipc *);
int		 ipc_fd(struct ipc *);
/* Readers: fatal on truncated or malformed payloads. */
uint32_t	 ipc_get_u32(struct ipc_msg *);
uint64_t	 ipc_get_u64(struct ipc_msg *);
const char	*ipc_get_str(struct ipc_msg *);	/* NULL if sent NULL */
const void	*ipc_get_data(struct ipc_msg *, size_t *);
void		 ipc_get_end(struct ipc_msg *);	/* no bytes may remain */
int		 ipc_get_more(const struct ipc_msg *);	/* bytes remain */
/* Lower level, used by the unit tests. */
int		 ipc_decode(const uint8_t *, size_t, struct ipc_hdr *);
const char	*ipc_type_name(uint32_t);

/* -------------------------------------------------------------- envelope */

/*
 * An envelope is one recipient of one message.  It crosses processes and
 * sits in the queue as a JSON object (envelope.c).
 */
struct envelope {
	uint64_t	id;
	uint32_t	msgid;
	char		sender[SMTPD_MAXADDR];	/* "" for <> */
	char		rcpt[SMTPD_MAXADDR];
	char		dest[SMTPD_MAXADDR];
	char		helo[256];
	char		hostname[256];		/* our name for this session */
	char		src[128];		/* client address text */
	char		tag[64];
	char		action[128];		/* dispatcher name */
	/*
	 * Set by expansion: the user the delivery runs as ("" means the
	 * local part of dest), and what aliases or .forward asked for
	 * instead of the action's own method.
	 */
	char		user[64];
	uint32_t	dlv;			/* DLV_* */
	char		dlv_arg[1024];		/* file path or command */
	char		errorline[512];		/* last delivery error */
	int64_t		creation;
	int64_t		lasttry;
	int64_t		nexttry;
	uint32_t	expire;			/* seconds after creation */
	uint32_t	retry;
	/* RFC 3461 DSN parameters given with MAIL FROM / RCPT TO. */
	uint32_t	dsn_notify;		/* DSN_NOTIFY_*; 0: not given */
	uint32_t	dsn_ret;		/* DSN_RET_*; 0: not given */
	char		dsn_envid[101];		/* ENVID, xtext-decoded */
	/* ORCPT as "addr-type;address", the address xtext-decoded. */
	char		dsn_orcpt[SMTPD_MAXADDR + 16];
	/* How many `bounce warn-interval` delays the sender was told of. */
	uint32_t	dsn_warned;
	/*
	 * Set when the envelope was delivered and only its success notice
	 * is left to queue: the Action ("delivered", "relayed").  Such an
	 * envelope found at start is never delivered again.
	 */
	char		dsn_success[16];
};

#define DSN_NOTIFY_SUCCESS	0x01
#define DSN_NOTIFY_FAILURE	0x02
#define DSN_NOTIFY_DELAY	0x04
#define DSN_NOTIFY_NEVER	0x08
#define DSN_RET_FULL		1
#define DSN_RET_HDRS		2
#define DSN_ENVID_MAX		100	/* RFC 3461 4.4, as sent (xtext) */
#define DSN_ORCPT_MAX		500	/* RFC 3461 4.2, as sent (xtext) */

#define DLV_ACTION	0	/* the action's method */
#define DLV_FILE	1	/* append to dlv_arg, mbox format */
#define DLV_COMMAND	2	/* pipe into dlv_arg */

/*
 * dsn.c: the DSN parameters.  Each parser returns 0, or -1 with the reason
 * in err for a "501 5.5.4" reply.  ENVID and the ORCPT address come out
 * xtext-decoded, ORCPT as "addr-type;address".
 */
int	 dsn_parse_ret(const char *, uint32_t *ret, char *err, size_t errlen);
int	 dsn_parse_envid(const char *, char *out, size_t outlen, char *err,
	    size_t errlen);
int	 dsn_parse_notify(const char *, uint32_t *notify, char *err,
	    size_t errlen);
int	 dsn_parse_orcpt(const char *, char *out, size_t outlen, char *err,
	    size_t errlen);
/* A stored ORCPT as sent on to the next hop, "addr-type;xtext"; or -1. */
int	 dsn_orcpt_encode(const char *orcpt, char *out, size_t outlen);
/* 1 if the sender gets notices of the kind (a DSN_NOTIFY_* bit). */
int	 dsn_wants(const struct envelope *, uint32_t what);

char	*envelope_dump(const struct envelope *);	/* malloc'd JSON */
int	 envelope_load_json(struct envelope *, const char *, size_t);

/* ---------------------------------------------------------------- module */

struct module {
	char			 path[PATH_MAX];
	struct msd_module	 desc;		/* zero-filled copy */
	/* Per module, so its log lines carry its name: pass it to init/ops. */
	const struct msd_host	*host;
	void			*ops;		/* zero-filled copy of desc.ops */
	size_t			 opslen;	/* our size of that kind's ops */
	pid_t			 init_pid;	/* the process init ran in */
};

void		 module_init(const char *config_path);
/* Loads kind/name; on failure logs one line and returns NULL. */
struct module	*module_load(uint32_t kind, const char *name);
/* 0 and the path when module_load() would find name; -1, quietly, if not. */
int		 module_find(uint32_t kind, const char *name, char *found,
		    size_t len);
/* Loads one file directly (kind 0 / name NULL: any); for the loader and tests. */
struct module	*module_load_file(const char *path, uint32_t kind,
		    const char *name);
const char	*module_kind_name(uint32_t);
const struct msd_host *module_host(void);
/*
 * The copy of the ops table, zero-filled up to our size; NULL when oursize
 * is larger than the copy (a host bug) or the kind has no ops table yet.
 */
const void	*module_ops(const struct module *, size_t oursize);

/* The lookup role's filter services, behind msd_host.filter_*. */
struct module_filter_services {
	void	(*reg)(msd_filter *, uint64_t events, uint64_t phases);
	void	(*result)(msd_filter *, uint64_t sid, uint64_t token,
		    uint32_t verdict, const char *param);
	void	(*dataline)(msd_filter *, uint64_t sid, uint64_t token,
		    const char *line, size_t len);
	void	(*fail)(msd_filter *, const char *reason);
};
void	module_filter_services(const struct module_filter_services *);

/* msd_result: host side of result_set / result_error. */
struct msd_result {
	char	*value;
	size_t	 len;
	char	 error[256];
	int	 failed;
};
/* Frees the value and clears r; r must be zeroed before its first use. */
void	result_reset(struct msd_result *);

/* Set by the role that runs the module so env_get can answer. */
struct msd_envelope {
	const struct envelope	*ev;
	const char		*user;
	const char		*homedir;
	const char		*mda_arg;
	const char		*mda_rcpt;	/* lmtp RCPT TO */
	int			 junk;
	char			 idbuf[24];
	char			 msgidbuf[12];
};

/* ----------------------------------------------------------------- roles */

enum smtpd_role {
	ROLE_PARENT,
	ROLE_CONTROL,
	ROLE_SMTP,
	ROLE_LOOKUP,
	ROLE_QUEUE,
	ROLE_MAX
};

/* Global state of the running process. */
struct smtpd {
	struct config	*conf;
	const char	*conffile;
	char		 spool[PATH_MAX];
	int		 privileged;		/* started as root */
	int		 foreground;
	enum smtpd_role	 role;
	struct event_base *evbase;
	/* Channels to the other roles, indexed by role; NULL if none. */
	struct ipc	*peer[ROLE_MAX];
};
extern struct smtpd env;

const char *role_name(enum smtpd_role);
/* Drops to user (and chroot when dir != NULL); no-op when unprivileged. */
void	role_drop_privileges(const char *user, const char *chrootdir);

/* Each role: setup after fork and privilege drop, and its IPC handler. */
void	control_main(void);
void	smtp_main(void);
void	lookup_main(void);
void	queue_main(void);
void	parent_imsg(struct ipc *, struct ipc_msg *, void *);
void	control_imsg(struct ipc *, struct ipc_msg *, void *);
void	smtp_imsg(struct ipc *, struct ipc_msg *, void *);
void	lookup_imsg(struct ipc *, struct ipc_msg *, void *);
void	queue_imsg(struct ipc *, struct ipc_msg *, void *);

/* smtp_session.c */
void	smtp_session_accept(int fd, const struct listener *);
/* mta.c: the relay, in the smtp role. */
void	mta_imsg(struct ipc_msg *, enum smtpd_role from);
/* dns.c: the resolver and relay routes, in the lookup role. */
void	dns_init(void);
void	dns_route_request(struct ipc_msg *);
void	dns_ptr_request(struct ipc_msg *);
void	smtp_session_imsg(struct ipc_msg *, enum smtpd_role from);

/*
 * Proc filters (smtpd-filters(7)).  Report events and phases in the
 * protocol's order of names (filter_proc.c has the names); the smtp role
 * sends events with their fields in the newest protocol's order and the
 * lookup role writes them in the order each filter's version expects.
 */
enum filter_event {
	FE_LINK_CONNECT, FE_LINK_GREETING, FE_LINK_IDENTIFY, FE_LINK_TLS,
	FE_LINK_AUTH, FE_LINK_DISCONNECT, FE_TX_RESET, FE_TX_BEGIN,
	FE_TX_MAIL, FE_TX_RCPT, FE_TX_ENVELOPE, FE_TX_DATA, FE_TX_COMMIT,
	FE_TX_ROLLBACK, FE_PROTOCOL_CLIENT, FE_PROTOCOL_SERVER,
	FE_FILTER_REPORT, FE_FILTER_RESPONSE, FE_TIMEOUT, FE_NEVENTS
};
enum fphase {
	FPH_CONNECT, FPH_HELO, FPH_EHLO, FPH_STARTTLS, FPH_AUTH,
	FPH_MAIL_FROM, FPH_RCPT_TO, FPH_DATA, FPH_DATA_LINE, FPH_RSET,
	FPH_QUIT, FPH_NOOP, FPH_HELP, FPH_WIZ, FPH_COMMIT, FPH_NPHASES
};
/* What IMSG_FILTER_RESULT tells a session. */
enum filter_verdict {
	FV_PROCEED,		/* run the command */
	FV_JUNK,		/* ... and mark the session or message as spam */
	FV_REWRITE,		/* ... with text as its argument */
	FV_REJECT,		/* reply text, carry on */
	FV_DISCONNECT,		/* reply text, close */
	FV_TEMPFAIL,		/* no answer in time: reply text, carry on */
	FV_FAIL,		/* a filter broke: reply text, close */
};
#define FILTER_LINE_MAX		(SMTPD_MAXLINESIZE + 1024)

/* filter.c (lookup role): chains, sessions, dispatch. */
void	filter_init(void);
void	filter_imsg(struct ipc_msg *, enum smtpd_role from);

/*
 * filter_module.c (parent): every `module` and builtin filter loads and
 * accepts its arguments; -1 after logging "file:line: ..." for each.
 */
int	filter_module_check(struct config *);

/* filter_exec.c (parent): starts and restarts the filter programs. */
void	filter_exec_start(void);
int	filter_exec_exited(pid_t, int status);
void	filter_exec_restart(struct ipc_msg *);
void	filter_exec_stop(void);
/*
 * smtp_tls.c.  The parent, before fork (and smtpd -n), reads every pki and
 * ca file and builds each TLS listener's server context; -1 after logging
 * "file:line: ..." for the first problem.  Every process but the smtp
 * role calls smtp_tls_forget() after fork, dropping the keys.
 */
int	smtp_tls_setup(struct config *);
void	smtp_tls_forget(struct config *);
/*
 * The smtp role wraps a session's socket bufferevent in a TLS server
 * filter (NULL on failure; raw is still the caller's then).  ready(arg)
 * runs once the handshake is done; a failure reaches the filter's event
 * callback as BEV_EVENT_ERROR, with smtp_tls_error() set.  The filter
 * owns raw and the struct smtp_tls, and frees both with itself.
 */
struct smtp_tls;
struct bufferevent;
struct bufferevent *smtp_tls_wrap(struct bufferevent *raw,
	    const struct listen_conf *, void (*ready)(void *), void *arg,
	    struct smtp_tls **);
int	 smtp_tls_established(const struct smtp_tls *);
const char *smtp_tls_error(const struct smtp_tls *);	/* NULL: none */
void	 smtp_tls_text(const struct smtp_tls *, char *buf, size_t len);
int	 smtp_tls_peer_cert(const struct smtp_tls *);
const char *smtp_tls_peer_hash(const struct smtp_tls *);
size_t	 smtp_tls_unsent(const struct smtp_tls *);	/* ciphertext */
/*
 * The relay's side: a client over raw, verifying the server against the
 * action's `ca` (or the system's CAs) when verify is set; the handshake
 * starts at once.
 */
struct bufferevent *smtp_tls_wrap_client(struct bufferevent *raw,
	    const struct action *, int verify, const char *servername,
	    void (*ready)(void *), void *arg, struct smtp_tls **);
void	 smtp_tls_close(struct smtp_tls *);

/* mda.c (parent): runs one local delivery in a child. */
int	mda_init(void);			/* loads the methods the config uses */
void	mda_deliver(struct ipc_msg *);
void	mda_child_exited(pid_t, int status);
size_t	mda_running(void);
void	mda_stop(void);
/* Longest result line a delivery worker may send, newline included. */
#define MDA_RESULT_MAX		640
/* Longest method argument: an expanded path or mda command line. */
#define MDA_ARG_MAX		4096

/* mda_worker.c: the worker process; never returns. */
void	mda_worker_run(struct module *, const struct userinfo *,
	    const gid_t *groups, int ngroups, int workfd, int resfd)
	    __attribute__((noreturn));

/*
 * offline.c: the parent re-submits, once the daemon is up, what sendmail
 * wrote to <spool>/offline while it was down (as each file's owner).
 */
void	 offline_enqueue(void);

/*
 * aliases.c: recipient expansion in the lookup role.  Each delivery one
 * recipient expands to is a struct xresult; IMSG_LKA_RCPT_RESULT carries
 * them as strings, read back by xresult_get().
 */
struct xresult {
	char		 action[128];
	char		 dest[SMTPD_MAXADDR];
	char		 user[64];
	uint32_t	 dlv;			/* DLV_* */
	char		 dlv_arg[1024];
};
void	 aliases_expand(struct ipc_msg *, enum smtpd_role from);
void	 aliases_forward_result(struct ipc_msg *);

/* auth.c: AUTH credentials, checked in the lookup role (or the parent). */
void	 auth_senders(struct ipc_msg *);
void	 auth_request(struct ipc_msg *);
void	 auth_system(struct ipc_msg *);
void	 auth_system_result(struct ipc_msg *);

/* proxy.c: the PROXY protocol v2 header of `proxy-v2` listeners. */
#define PROXY_TIMEOUT	10		/* seconds to send the header */
#define PROXY_HDR_MAX	(16 + 65535)	/* the longest header */
struct proxy_info {
	int			 local;		/* LOCAL: the real addresses */
	struct sockaddr_storage	 src;		/* the client */
	struct sockaddr_storage	 dst;		/* what it connected to */
};
int	 proxy_v2_parse(const uint8_t *buf, size_t len, struct proxy_info *,
	    char *err, size_t errlen);

/*
 * masquerade.c: `senders <t> masquerade`.  hdr is one From: header, its
 * lines joined by "\n"; the header with every address replaced by addr
 * (malloc'd, *outlen bytes), or NULL to keep it as it is.
 */
char	*masquerade_from(const char *hdr, size_t len, const char *addr,
	    size_t *outlen);
int	 masquerade_is_from(const char *line, size_t len);

/* password.c: 1 match, 0 no match or locked, -1 unknown hash scheme. */
int	 password_check(const char *pass, const char *hash);
/* A new bcrypt hash, NULL on failure; the caller frees it. */
char	*password_hash(const char *pass);
int	 xresult_get(struct ipc_msg *, struct xresult *);
/* The parent's half: opens ~/.forward for the lookup role. */
void	 forward_open(struct ipc_msg *);

/* mailq.c: prints the queue, for sendmail -bp; an exit status. */
int	 mailq_run(const char *spool);

/* control.c: the control socket, bound by the parent. */
int	control_socket_bind(void);
extern int control_fd;

/* scheduler.c (queue role) */
void	scheduler_init(void);
void	scheduler_add(struct envelope *);		/* takes a copy */
void	scheduler_result(uint64_t evpid, int status, const char *text);
/* Answers IMSG_CTL_LIST: one line per envelope (see scheduler.c). */
void	scheduler_list(uint64_t reqid);
/* Deletes a finished envelope, and its message with the last one. */
void	scheduler_remove(const struct envelope *);
/*
 * A hold on a message without an envelope (a delay notice being written,
 * an envelope loaded for its success notice only): scheduler_release()
 * drops it, deleting the message if nothing else holds it.
 */
void	scheduler_hold(uint32_t msgid);
void	scheduler_release(uint32_t msgid);

/*
 * queue_bounce.c: RFC 3464 notifications to the sender, as the envelope's
 * DSN parameters allow.  bounce_start() (failed) and bounce_success()
 * take the envelope over: the caller frees its copy and does not remove
 * it; it is removed once the notice is queued (or none is due).
 * bounce_delay() is called on each temporary failure of an envelope that
 * is kept: it may send a "delayed" notice and then counts it in
 * ev->dsn_warned, which the caller writes to the queue with the retry.
 */
void	bounce_start(const struct envelope *, const char *diag, int expired);
void	bounce_success(const struct envelope *, const char *dsn_action,
	    const char *diag);
void	bounce_delay(struct envelope *, const char *diag);
void	bounce_lookup_result(struct ipc_msg *);

/* queue_backend.c (queue role): host side of the queue module. */
int	queue_backend_init(const char *name);
int	queue_message_create(uint32_t *msgid, int *fd);
int	queue_message_commit(uint32_t msgid);
int	queue_message_delete(uint32_t msgid);
/*
 * The message as plaintext, a regular file at offset 0.  -1: the module
 * cannot open it; QUEUE_UNREADABLE: it is there but cannot be decoded
 * (wrong key, corrupt: logged), so it must be kept, never given up.
 */
#define QUEUE_UNREADABLE	(-2)
int	queue_message_fd_r(uint32_t msgid);
int	queue_envelope_create(struct envelope *);	/* sets ev->id */
int	queue_envelope_delete(uint64_t evpid);
int	queue_envelope_update(const struct envelope *);
int	queue_flush(void);
/* Calls cb for each committed envelope; removes orphans. */
int	queue_load(void (*cb)(struct envelope *));
/*
 * queue_crypt.c: the stored form of queue files under `queue compression`
 * and `queue encryption` (a header says how each file is stored).  The
 * pack functions write the current setting's form; unpack reads any form
 * this process may trust.  Both return 0, or -1 with err set; output of
 * a failed unpack must be discarded.  Buffers come back NUL-terminated.
 */
#define QCRYPT_KEY_LEN		32
int	qcrypt_set_key(const char *key, size_t len);	/* -1: not 32 bytes */
void	qcrypt_set_compress(int on);
void	qcrypt_forget(void);		/* wipes the key (non-queue roles) */
int	qcrypt_active(void);		/* new files are packed */
int	qcrypt_encrypting(void);
int	qcrypt_is_packed(const void *head, size_t len);
int	qcrypt_pack_fd(int in, int out, char *err, size_t errlen);
int	qcrypt_unpack_fd(int in, int out, char *err, size_t errlen);
int	qcrypt_pack_buf(const void *in, size_t len, char **out, size_t *outlen,
	    char *err, size_t errlen);
int	qcrypt_unpack_buf(const void *in, size_t len, char **out,
	    size_t *outlen, char *err, size_t errlen);

/*
 * queue_key.c (parent, at start): takes the `queue encryption` key from
 * the configuration, standard input or the terminal, hands it to
 * queue_crypt.c and wipes every other copy.  -1: logged, do not start.
 */
int	queue_key_setup(struct config *);
int	queue_key_check(const struct config *);	/* for smtpd -n */

/* queue.c: seconds an envelope for that action may wait (`ttl`, `queue ttl`). */
uint32_t queue_ttl(const char *action);

/* Delivery status in IMSG_MDA_RESULT / scheduler_result. */
#define DELIVERY_OK		0
#define DELIVERY_TEMPFAIL	1
#define DELIVERY_PERMFAIL	2
/* Relay successes: the next hop had no DSN, or took our DSN parameters. */
#define DELIVERY_RELAYED	3
#define DELIVERY_DSN_PASSED	4
/*
 * Relay: no host of the route would take a connection.  Retried as
 * TEMPFAIL, and at once when the route delivers again (mta max-deferred).
 */
#define DELIVERY_DEFERRED	5

/* Lookup status in IMSG_LKA_RCPT_RESULT. */
/* IMSG_LKA_FORWARD_RESULT status. */
#define FORWARD_NONE		0	/* no .forward: the mailbox */
#define FORWARD_OPEN		1	/* the descriptor follows */
#define FORWARD_TEMPFAIL	2	/* could not tell: try later */

#define LKA_OK			0
#define LKA_REJECT		1
#define LKA_TEMPFAIL		2

#endif /* SMTPD_H */
