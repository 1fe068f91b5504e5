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
#define DEFAULT_MAX_MSGSIZE	(35UL * 1024 * 1024)
#define DEFAULT_EXPIRE		(4 * 24 * 3600)	/* queue ttl 4d */
#define MAX_RECEIVED		100		/* loop detection */
#define IPC_MAX_MSG		(1024 * 1024)	/* one framed message */
#define IPC_CHUNK		(256 * 1024)	/* fill frames up to this */

#define SMTPD_MAXADDR		512		/* local@domain, with brackets */

/* ---------------------------------------------------------------- config */

enum table_kind {
	TABLE_LIST,		/* { a, b, c } */
	TABLE_MAP,		/* { k = v, ... } */
};

struct table_entry {
	char		*key;
	char		*value;		/* NULL in a list */
};

struct table {
	TAILQ_ENTRY(table)	 entry;
	char			*name;
	enum table_kind		 kind;
	struct table_entry	*entries;
	size_t			 nentries;
	char			*file;		/* where it was declared */
	int			 line;
};
TAILQ_HEAD(tablelist, table);

#define LISTEN_INET4		0x01
#define LISTEN_INET6		0x02

struct listener {
	TAILQ_ENTRY(listener)	 entry;
	struct sockaddr_storage	 ss;		/* address and port */
	socklen_t		 sslen;
	char			*tag;		/* NULL when none */
	char			*hostname;	/* NULL: the global one */
	int			 fd;		/* -1 until bound */
	void			*ev;		/* smtp role: accept event */
	char			*file;
	int			 line;
};
TAILQ_HEAD(listenerlist, listener);

enum action_method {
	A_MAILDIR,
};

struct action {
	TAILQ_ENTRY(action)	 entry;
	char			*name;
	enum action_method	 method;
	char			*path;		/* maildir path; NULL: ~/Maildir */
	int			 junk;
	char			*user;		/* `user` option; NULL: rcpt user */
	char			*file;
	int			 line;
};
TAILQ_HEAD(actionlist, action);

enum from_kind {
	FROM_ANY,
	FROM_LOCAL,		/* local socket or loopback */
	FROM_SOCKET,		/* local socket only */
	FROM_SRC,		/* src <table> */
};

enum for_kind {
	FOR_ANY,
	FOR_LOCAL,		/* localhost and this host's names */
	FOR_DOMAIN,		/* domain D or domain <table> */
};

struct rule {
	TAILQ_ENTRY(rule)	 entry;
	int			 reject;	/* `match ... reject` */
	enum from_kind		 from;
	int			 from_neg;
	struct table		*from_table;	/* FROM_SRC */
	enum for_kind		 for_;
	int			 for_neg;
	char			*for_domain;	/* FOR_DOMAIN, literal */
	struct table		*for_table;	/* FOR_DOMAIN, table */
	char			*tag;		/* `tag T`; NULL: any */
	int			 tag_neg;
	struct action		*action;	/* NULL when reject */
	char			*file;
	int			 line;
};
TAILQ_HEAD(rulelist, rule);

struct config {
	char			*hostname;	/* server name (smtpname) */
	char			*module_path;	/* `module-path`, may be NULL */
	size_t			 max_message_size;
	size_t			 max_rcpt;
	size_t			 max_mails;
	struct tablelist	 tables;
	struct listenerlist	 listeners;
	struct actionlist	 actions;
	struct rulelist		 rules;
};

/* What ruleset_match() looks at for one recipient. */
struct match_ctx {
	int			 local;		/* came over the local socket */
	const struct sockaddr_storage *src;	/* NULL for the local socket */
	const char		*tag;		/* listener tag or NULL */
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

/* ruleset.c: first matching rule or NULL (NULL means reject). */
const struct rule *ruleset_match(const struct config *,
		    const struct match_ctx *);
int		 domain_is_local(const struct config *, const char *domain);
/* An address or CIDR network as `from src` tables hold them. */
int		 ruleset_netaddr_valid(const char *);

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
int	 xasprintf(char **, const char *, ...) __attribute__((format(printf, 2, 3)));
size_t	 msd_strlcpy(char *, const char *, size_t);
size_t	 msd_strlcat(char *, const char *, size_t);
const char *ss_to_text(const struct sockaddr_storage *);
int	 ss_is_loopback(const struct sockaddr_storage *);
int	 mkdir_p(const char *path, mode_t mode);
int	 fsync_dir(const char *path);
uint32_t msd_random(void);
/* Splits user@domain; returns -1 on syntax error.  Sizes include NUL. */
int	 addr_split(const char *addr, char *user, size_t ulen,
	    char *domain, size_t dlen);
/* Lowercases ASCII in place. */
void	 lowercase(char *);

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
	IMSG_LKA_RCPT_RESULT,		/* reqid, status, action, text */
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
					   path, junk, +fd */
	/* control */
	IMSG_CTL_SHUTDOWN,		/* parent -> queue: all results sent */
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
	char		errorline[512];		/* last delivery error */
	int64_t		creation;
	int64_t		lasttry;
	int64_t		nexttry;
	uint32_t	expire;			/* seconds after creation */
	uint32_t	retry;
};

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
};

void		 module_init(const char *config_path);
/* Loads kind/name; on failure logs one line and returns NULL. */
struct module	*module_load(uint32_t kind, const char *name);
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
void	smtp_session_imsg(struct ipc_msg *, enum smtpd_role from);

/* mda.c (parent): runs one local delivery in a child. */
int	mda_init(void);			/* loads the methods the config uses */
void	mda_deliver(struct ipc_msg *);
void	mda_child_exited(pid_t, int status);
size_t	mda_running(void);
void	mda_stop(void);
/* Longest result line a delivery worker may send, newline included. */
#define MDA_RESULT_MAX		640

/* mda_worker.c: the worker process; never returns. */
struct passwd;
void	mda_worker_run(struct module *, const struct passwd *,
	    const gid_t *groups, int ngroups, int workfd, int resfd)
	    __attribute__((noreturn));

/* control.c: the control socket, bound by the parent. */
int	control_socket_bind(void);
extern int control_fd;

/* scheduler.c (queue role) */
void	scheduler_init(void);
void	scheduler_add(struct envelope *);		/* takes a copy */
void	scheduler_result(uint64_t evpid, int status, const char *text);

/* queue_backend.c (queue role): host side of the queue module. */
int	queue_backend_init(const char *name);
int	queue_message_create(uint32_t *msgid, int *fd);
int	queue_message_commit(uint32_t msgid);
int	queue_message_delete(uint32_t msgid);
int	queue_message_fd_r(uint32_t msgid);
int	queue_envelope_create(struct envelope *);	/* sets ev->id */
int	queue_envelope_delete(uint64_t evpid);
int	queue_envelope_update(const struct envelope *);
int	queue_flush(void);
/* Calls cb for each committed envelope; removes orphans. */
int	queue_load(void (*cb)(struct envelope *));

/* Delivery status in IMSG_MDA_RESULT / scheduler_result. */
#define DELIVERY_OK		0
#define DELIVERY_TEMPFAIL	1
#define DELIVERY_PERMFAIL	2

/* Lookup status in IMSG_LKA_RCPT_RESULT. */
#define LKA_OK			0
#define LKA_REJECT		1
#define LKA_TEMPFAIL		2

#endif /* SMTPD_H */
