/*
 * modsmtpd.h - the public module ABI of modsmtpd.
 *
 * This header is all a module may use from modsmtpd: modules link against
 * nothing from the daemon.  See smtpd-module(3) and sdk/README.md for the
 * lifecycle and the versioning rules summarised in msd_version.h.
 *
 * Layout rules: fixed-width integers only, no enum-typed members, no bool,
 * no bitfields; structs grow only at their end and carry their size.
 */
#ifndef MODSMTPD_H
#define MODSMTPD_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "msd_version.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MSD_MAGIC		0x4d53444dU	/* "MSDM" */

/* Module kinds; explicit values, never reordered. */
#define MSD_KIND_TABLE		1
#define MSD_KIND_QUEUE		2
#define MSD_KIND_MDA		3
#define MSD_KIND_FILTER		4

/* msd_module.flags */
#define MSD_MF_LP64		0x0001	/* built with 64-bit pointers */
#define MSD_MF_TIME64		0x0002	/* built with 64-bit time_t */
#define MSD_MF_MAY_BLOCK	0x0100	/* ops may block for long */

#if UINTPTR_MAX > 0xffffffffU
#define MSD_MF_BUILD_LP64	MSD_MF_LP64
#else
#define MSD_MF_BUILD_LP64	0
#endif
#define MSD_MF_BUILD		(MSD_MF_BUILD_LP64 | \
	    (sizeof(time_t) == 8 ? MSD_MF_TIME64 : 0))
/* Layout bits the host compares with its own. */
#define MSD_MF_LAYOUT		(MSD_MF_LP64 | MSD_MF_TIME64)

/* Log levels given to msd_host.log. */
#define MSD_LOG_ERR		3
#define MSD_LOG_WARNING		4
#define MSD_LOG_INFO		6
#define MSD_LOG_DEBUG		7

/*
 * Results of module operations: tri-state as in OpenSMTPD's tables.
 * A temporary error always becomes a 4xx, never a "not found".
 */
#define MSD_OK			1	/* found / done */
#define MSD_NOTFOUND		0
#define MSD_TEMPFAIL		(-1)
#define MSD_PERMFAIL		(-2)

/* Events for fd_watch. */
#define MSD_EV_READ		0x02
#define MSD_EV_WRITE		0x04

/*
 * 1.3: table(5) services, the bits of msd_module.services for a table
 * module and the service argument of its lookups.  Values are those of
 * OpenSMTPD's K_* constants, which its table programs also use.
 */
#define MSD_TS_ALIAS		0x0001	/* user -> aliases(5) list */
#define MSD_TS_DOMAIN		0x0002	/* domain (list) */
#define MSD_TS_CREDENTIALS	0x0004	/* user -> crypt(3) hash */
#define MSD_TS_NETADDR		0x0008	/* address or CIDR (list) */
#define MSD_TS_USERINFO		0x0010	/* user -> uid:gid:/home */
#define MSD_TS_SOURCE		0x0020	/* source addresses (list) */
#define MSD_TS_MAILADDR		0x0040	/* user@domain, @domain, user */
#define MSD_TS_ADDRNAME		0x0080	/* address -> host name */
#define MSD_TS_MAILADDRMAP	0x0100	/* user -> list of mailaddr */
#define MSD_TS_RELAYHOST	0x0200	/* label -> relay URL */
#define MSD_TS_STRING		0x0400	/* string (list) */
#define MSD_TS_REGEX		0x0800	/* extended regex (list) */

/* Envelope fields reachable through msd_host.env_get. */
#define MSD_ENV_ID		1	/* envelope id, 16 hex digits */
#define MSD_ENV_SENDER		2	/* MAIL FROM address, "" for <> */
#define MSD_ENV_RCPT		3	/* RCPT TO address as given */
#define MSD_ENV_DEST		4	/* final destination address */
#define MSD_ENV_USER		5	/* delivery user name */
#define MSD_ENV_HOMEDIR		6	/* delivery user home directory */
#define MSD_ENV_MDA_ARG		7	/* method argument, expanded (maildir path...) */
#define MSD_ENV_MDA_JUNK	8	/* "1" when the action has junk */
#define MSD_ENV_HELO		9
#define MSD_ENV_SRC		10	/* client address text */
#define MSD_ENV_HOSTNAME	11	/* this server's name */
#define MSD_ENV_MSGID		12	/* message id, 8 hex digits */
#define MSD_ENV_CREATION	13	/* 1.1: queued at, decimal Unix time */
#define MSD_ENV_MDA_RCPT	14	/* 1.2: lmtp: the address for RCPT TO */

#if MSD_ABI_TARGET_MINOR >= 4
/*
 * 1.4: filters.  The report events and the phases of the smtpd-filters
 * protocol (smtpd-filters(7)), by number; a registration mask has bit
 * (1 << value) for each.  Fields are those of the protocol's report
 * lines, in the order of its newest version (link-auth: result, user).
 */
#define MSD_FE_LINK_CONNECT	0	/* rdns, fcrdns, src, dest */
#define MSD_FE_LINK_GREETING	1	/* hostname */
#define MSD_FE_LINK_IDENTIFY	2	/* method, identity */
#define MSD_FE_LINK_TLS		3	/* tls-string */
#define MSD_FE_LINK_AUTH	4	/* result, username */
#define MSD_FE_LINK_DISCONNECT	5
#define MSD_FE_TX_RESET		6	/* msgid */
#define MSD_FE_TX_BEGIN		7	/* msgid */
#define MSD_FE_TX_MAIL		8	/* msgid, result, address */
#define MSD_FE_TX_RCPT		9	/* msgid, result, address */
#define MSD_FE_TX_ENVELOPE	10	/* msgid, evpid */
#define MSD_FE_TX_DATA		11	/* msgid, result */
#define MSD_FE_TX_COMMIT	12	/* msgid, size */
#define MSD_FE_TX_ROLLBACK	13	/* msgid */
#define MSD_FE_PROTOCOL_CLIENT	14	/* command */
#define MSD_FE_PROTOCOL_SERVER	15	/* response */
#define MSD_FE_FILTER_REPORT	16	/* kind, name, message */
#define MSD_FE_FILTER_RESPONSE	17	/* phase, response[, param] */
#define MSD_FE_TIMEOUT		18

#define MSD_FP_CONNECT		0	/* param "rdns|src" */
#define MSD_FP_HELO		1	/* the HELO argument */
#define MSD_FP_EHLO		2
#define MSD_FP_STARTTLS		3	/* "" */
#define MSD_FP_AUTH		4	/* the mechanism, credentials masked */
#define MSD_FP_MAIL_FROM	5	/* the address, no <> */
#define MSD_FP_RCPT_TO		6
#define MSD_FP_DATA		7	/* "" */
#define MSD_FP_DATA_LINE	8	/* data_line(), not request() */
#define MSD_FP_RSET		9
#define MSD_FP_QUIT		10
#define MSD_FP_NOOP		11
#define MSD_FP_HELP		12	/* never requested, as upstream */
#define MSD_FP_WIZ		13	/* never requested, as upstream */
#define MSD_FP_COMMIT		14	/* "", after the message's last line */

/* The answers of filter_result(). */
#define MSD_FV_PROCEED		0	/* next filter, then the command */
#define MSD_FV_JUNK		1	/* mark as spam; the command runs */
#define MSD_FV_REJECT		2	/* param "4xx text" / "5xx text" */
#define MSD_FV_DISCONNECT	3	/* param as reject; then close */
#define MSD_FV_REWRITE		4	/* param: the command's new argument */
#define MSD_FV_REPORT		5	/* param: a filter-report; proceed */
#define MSD_FV_BYPASS		6	/* the command runs, skipping the rest
					   of the chain */

/* Results of a host service that may answer later. */
#define MSD_PENDING		(-3)

typedef struct msd_filter	msd_filter;
#endif

typedef struct msd_timer	msd_timer;
typedef struct msd_io		msd_io;
typedef struct msd_result	msd_result;
typedef struct msd_envelope	msd_envelope;

/*
 * Services the host gives a module.  Check size before using a member
 * newer than the minor the module was built for (the host is never older
 * than the module's minor, so members up to it are always there).
 * Host services may be called only from the thread that called into the
 * module; strings the host passes are valid for the duration of the call.
 */
struct msd_host {
	uint32_t	size;
	uint16_t	abi_major;
	uint16_t	abi_minor;

	void		(*log)(int level, const char *fmt, ...)
			    __attribute__((format(printf, 2, 3)));
	/*
	 * Global settings: "hostname", "spool", "module-path", and "user"
	 * (the unprivileged user the daemon's roles run as, when the caller
	 * is root: what a module should run helper programs as).  NULL if
	 * unset.
	 */
	const char	*(*config_get)(const char *key);
	/*
	 * The host's event loop; modules never run one of their own.  A timer
	 * fires once and its handle is freed when the callback returns, so
	 * timer_del is for a pending timer only.  A watch stays until
	 * fd_unwatch, which the callback itself may call.  NULL: no loop.
	 */
	msd_timer	*(*timer_add)(uint32_t msec, void (*cb)(void *), void *arg);
	void		(*timer_del)(msd_timer *);
	msd_io		*(*fd_watch)(int fd, uint32_t events,
			    void (*cb)(int fd, uint32_t events, void *arg),
			    void *arg);
	void		(*fd_unwatch)(msd_io *);
	/* The host copies values: nothing is freed across the boundary. */
	void		(*result_set)(msd_result *, const char *, size_t);
	void		(*result_error)(msd_result *, const char *msg);
	const char	*(*env_get)(const msd_envelope *, uint32_t field);
#if MSD_ABI_TARGET_MINOR >= 1
	/* 1.1: optional named interfaces; NULL when not provided. */
	const void	*(*query)(const char *iface, uint32_t min_version);
#endif
#if MSD_ABI_TARGET_MINOR >= 4
	/*
	 * 1.4: filters (lookup role).  self is the handle open() got.
	 * filter_register says which events and phases (masks of 1 << the
	 * MSD_FE_* / MSD_FP_* values) the instance wants; sessions wait for
	 * it, and it may be called again to change them.  filter_result
	 * answers request(sid, token) once, from inside the call or later;
	 * filter_dataline emits one line of output for data_line(sid,
	 * token), dot-stuffed, without its newline, "." last.  Answers for
	 * a session that has gone (or timed out) are ignored.  filter_fail:
	 * the instance is broken; its sessions get 421 and new ones wait
	 * until it registers again.
	 */
	void		(*filter_register)(msd_filter *self, uint64_t events,
			    uint64_t phases);
	void		(*filter_result)(msd_filter *self, uint64_t sid,
			    uint64_t token, uint32_t verdict, const char *param);
	void		(*filter_dataline)(msd_filter *self, uint64_t sid,
			    uint64_t token, const char *line, size_t len);
	void		(*filter_fail)(msd_filter *self, const char *reason);
	/*
	 * 1.4: whether key matches table NAME of smtpd.conf for service (one
	 * MSD_TS_* bit; MSD_TS_REGEX for a regex table), as a rule would.
	 * MSD_OK, MSD_NOTFOUND or MSD_TEMPFAIL now; or MSD_PENDING for a
	 * table served by a worker process: done(arg, result) then runs
	 * exactly once, later, from the event loop (keep arg valid).  NULL
	 * outside the lookup role.
	 */
	int		(*table_match)(const char *table, uint32_t service,
			    const char *key, void (*done)(void *arg, int result),
			    void *arg);
#endif
};

/*
 * Queue backend.  The queue role is the only caller and may block.
 * Durability contract: after message_commit() returns MSD_OK and, when the
 * module has flush, after the next flush() returns MSD_OK, the message and
 * every envelope created for it survive a crash.  The host answers 250 to
 * the client only then.
 */
struct msd_queue_ops {
	uint32_t	size;
	int	(*open)(const struct msd_host *, const char *spool,
		    const char *config, void **inst);
	void	(*close)(void *inst);
	/* Creates an empty message; *fd is open for writing by the host. */
	int	(*message_create)(void *inst, uint32_t *msgid, int *fd);
	int	(*message_commit)(void *inst, uint32_t msgid);
	int	(*message_delete)(void *inst, uint32_t msgid);
	/* Returns a descriptor open for reading, or -1. */
	int	(*message_fd_r)(void *inst, uint32_t msgid);
	/* Envelopes are opaque bytes to the module (the host's JSON). */
	int	(*envelope_create)(void *inst, uint32_t msgid,
		    const char *buf, size_t len, uint64_t *evpid);
	int	(*envelope_delete)(void *inst, uint64_t evpid);
	int	(*envelope_update)(void *inst, uint64_t evpid,
		    const char *buf, size_t len);
	int	(*envelope_load)(void *inst, uint64_t evpid, msd_result *out);
	/*
	 * Walks committed envelopes: returns MSD_OK with *evpid and the bytes
	 * in out for each, MSD_NOTFOUND at the end.  *cookie starts as NULL
	 * and is NULL again after the last call (MSD_NOTFOUND or
	 * MSD_TEMPFAIL), which frees the walk: walk to the end.
	 */
	int	(*envelope_walk)(void *inst, void **cookie, uint64_t *evpid,
		    msd_result *out);
	/* Walks message ids present in the spool, committed or not. */
	int	(*message_walk)(void *inst, void **cookie, uint32_t *msgid);
#if MSD_ABI_TARGET_MINOR >= 1
	/* 1.1: makes staged commits durable in one round (group commit). */
	int	(*flush)(void *inst);
#endif
};

/*
 * Delivery method.  deliver() runs in a delivery worker, a process that
 * already runs as the recipient user and serves that user's deliveries one
 * after the other.  fd is the message, a regular file positioned at its
 * start (a module may seek it): read it to the end and leave it open.  Return MSD_OK only once the message is durable, else
 * MSD_TEMPFAIL or MSD_PERMFAIL with result_error for the reason that goes
 * to the log and the bounce.
 */
struct msd_mda_ops {
	uint32_t	size;
	int	(*deliver)(const struct msd_host *, int fd,
		    const msd_envelope *, msd_result *);
};

#if MSD_ABI_TARGET_MINOR >= 3
/*
 * 1.3: table backend.  A module serves a table in one of two ways (or
 * both; then load wins):
 *
 *  - load() hands every entry to the host (value NULL for a list entry);
 *    the host indexes them and matches every service as table(5) says, so
 *    a db or file table answers exactly as an inline one.  A table whose
 *    entries mix keys with and without values is refused.  update() is a
 *    new load(): the old contents answer until the new ones are complete.
 *  - lookup() answers each query itself (SQL, an external program); keys
 *    arrive lowercased.  For a list service the value is the entry that
 *    matched.  fetch() gives the next entry of a round-robin service
 *    (source, relayhost), wrapping around.
 *
 * name is the table's name in smtpd.conf, config what follows "TYPE:" in
 * its definition ("" when nothing does).  Every op but open and close may
 * be NULL.  Ops run in the lookup role and, to check a configuration, in
 * the parent; they block that process, so a slow backend declares
 * MSD_MF_MAY_BLOCK.  Errors: MSD_TEMPFAIL with result_error (the lookup
 * becomes a 4xx), never MSD_NOTFOUND.
 */
typedef int	msd_table_entry_fn(void *arg, const char *key,
		    const char *value, uint32_t line);

struct msd_table_ops {
	uint32_t	size;
	int	(*open)(const struct msd_host *, const char *name,
		    const char *config, void **inst);
	void	(*close)(void *inst);
	/*
	 * Calls entry() once per entry, line being the source line (0 when
	 * there is none); entry() returns -1 to stop.  MSD_OK, or
	 * MSD_TEMPFAIL/MSD_PERMFAIL with result_error("file:line: why").
	 */
	int	(*load)(void *inst, msd_table_entry_fn *entry, void *arg,
		    msd_result *err);
	int	(*lookup)(void *inst, uint32_t service, const char *key,
		    msd_result *out);
	int	(*fetch)(void *inst, uint32_t service, msd_result *out);
	/* Lookup-style tables: re-read the source (MSD_OK or TEMPFAIL). */
	int	(*update)(void *inst);
};
#endif

#if MSD_ABI_TARGET_MINOR >= 4
/*
 * 1.4: in-process filter, the smtpd-filters protocol as calls.  One
 * instance per `filter NAME module MODULE [ARG ...]` of smtpd.conf (and
 * per builtin `filter NAME phase ...`, served by the module "builtin").
 * open() gets the filter's name and its arguments; it may be called in
 * the parent to check the configuration, followed by close(), so it only
 * parses and allocates: connect to services from a timer or the first
 * session.  It registers through host->filter_register(self, ...), at
 * once or later.  Then, in the lookup role, for the sessions of the
 * listeners whose chain holds the filter:
 *
 *  - report(): an event it registered, with its fields;
 *  - request(): a phase it registered; answer with filter_result(self,
 *    sid, token, MSD_FV_*, param) once, now or later;
 *  - data_line(): each line of the message when it registered
 *    MSD_FP_DATA_LINE (the Received header first, dot-stuffed, "." last);
 *    answer with any number of filter_dataline() and a final ".";
 *  - session_end(): the session is gone; forget it.
 *
 * The host answers the client with 451 if a filter does not answer
 * within the filter timeout.  Calls never overlap; a module never blocks
 * in them (tables through host->table_match).  Every op but open may be
 * NULL.
 */
struct msd_filter_ops {
	uint32_t	size;
	int	(*open)(const struct msd_host *, msd_filter *self,
		    const char *name, uint32_t argc, const char *const *argv,
		    void **inst, msd_result *err);
	void	(*close)(void *inst);
	void	(*report)(void *inst, uint64_t sid, uint32_t event,
		    uint32_t nfields, const char *const *fields);
	void	(*request)(void *inst, uint64_t sid, uint64_t token,
		    uint32_t phase, const char *param);
	void	(*data_line)(void *inst, uint64_t sid, uint64_t token,
		    const char *line, size_t len);
	void	(*session_end)(void *inst, uint64_t sid);
};
#endif

/*
 * The descriptor returned by a module's entry function.
 */
struct msd_module {
	uint32_t	magic;
	uint16_t	abi_major;
	uint16_t	abi_minor;
	uint32_t	size;		/* of this struct, as the module saw it */
	uint32_t	flags;
	uint32_t	kind;
	uint32_t	services;	/* tables: K_* bits of table(5) services */
	const char	*name;
	const char	*version;
	/* Once per process that uses the module, after fork and priv drop. */
	int		(*init)(const struct msd_host *);
	void		(*fini)(void);
	const void	*ops;		/* kind-specific, starts with its size */
#if MSD_ABI_TARGET_MINOR >= 1
	const char	*description;	/* 1.1 */
#endif
};

/* Sizes a module declares: those of the minor it is compiled for. */
#define MSD_MODULE_SIZE		((uint32_t)sizeof(struct msd_module))
#define MSD_HOST_SIZE		((uint32_t)sizeof(struct msd_host))
#define MSD_QUEUE_OPS_SIZE	((uint32_t)sizeof(struct msd_queue_ops))
#define MSD_MDA_OPS_SIZE	((uint32_t)sizeof(struct msd_mda_ops))
#if MSD_ABI_TARGET_MINOR >= 3
#define MSD_TABLE_OPS_SIZE	((uint32_t)sizeof(struct msd_table_ops))
#endif
#if MSD_ABI_TARGET_MINOR >= 4
#define MSD_FILTER_OPS_SIZE	((uint32_t)sizeof(struct msd_filter_ops))
#endif

typedef const struct msd_module *msd_entry_fn(uint16_t host_major,
    uint16_t host_minor);

#define MSD_ENTRY_SYMBOL	"msd_module_entry"

#if defined(__GNUC__)
#define MSD_EXPORT	__attribute__((visibility("default")))
#else
#define MSD_EXPORT
#endif

/*
 * MSD_MODULE(name) defines the entry function.  It is exported as
 * <name>_LTX_msd_module_entry, the libltdl convention, so the same object
 * works as a loadable .so and preloaded into the daemon; name must be the
 * file's base name (maildir for maildir.so).
 *
 *	MSD_MODULE(maildir)
 *	{
 *		return &descriptor;
 *	}
 */
#define MSD_MODULE(name)						\
	MSD_EXPORT const struct msd_module *name##_LTX_msd_module_entry(\
	    uint16_t host_major, uint16_t host_minor);			\
	MSD_EXPORT const struct msd_module *name##_LTX_msd_module_entry(\
	    uint16_t host_major, uint16_t host_minor)

#ifdef __cplusplus
}
#endif

#endif /* MODSMTPD_H */
