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
