/*
 * filter.h - between the lookup role's filter chains (filter.c) and the
 * filter implementations they call.  A chain is a list of instances; each
 * instance has an implementation behind struct filter_ops that takes a
 * request and answers later through filter_verdict() / filter_line_out().
 * filter_proc.c is a program spoken to over smtpd-filters, filter_module.c
 * an in-process filter module (the builtin filters among them).
 *
 * An implementation may answer from inside request() or line(), so the
 * chain code calls them last, with nothing of the session used after the
 * call; it must never fail (filter_impl_failed) from inside one of these
 * calls: that frees sessions the caller still holds.
 */
#ifndef FILTER_H
#define FILTER_H

#include <sys/time.h>

struct filter_ops {
	/* Registered and able to take requests now. */
	int	(*ready)(void *impl);
	int	(*wants_event)(void *impl, enum filter_event);
	int	(*wants_phase)(void *impl, enum fphase);
	uint32_t (*timeout)(void *impl);	/* seconds */
	void	(*report)(void *impl, const struct timeval *, uint64_t sid,
		    enum filter_event, const char *const *fields, size_t n);
	void	(*request)(void *impl, const struct timeval *, uint64_t sid,
		    uint64_t token, enum fphase, const char *param);
	/* One data line (no newline), dot-stuffed; "." ends the message. */
	void	(*line)(void *impl, const struct timeval *, uint64_t sid,
		    uint64_t token, const char *line, size_t len);
	/* The session is gone (may be NULL). */
	void	(*end)(void *impl, uint64_t sid);
};

/* From an implementation: the answer to request(). */
void	filter_verdict(void *impl, uint64_t sid, uint64_t token,
	    enum filter_verdict, const char *decision, const char *param);
/* From an implementation: one line of its data-line output. */
void	filter_line_out(void *impl, uint64_t sid, uint64_t token,
	    const char *line, size_t len);
/* The implementation broke: its sessions fail with 421. */
void	filter_impl_failed(void *impl);
/* The implementation registered: waiting sessions may go on. */
void	filter_impl_ready(void *impl);

/* filter_proc.c */
extern const struct filter_ops filter_proc_ops;
void	*filter_proc_new(const char *name, const char *protocol,
	    uint32_t timeout);
void	*filter_proc_find(const char *name);
/* The parent started the program: fd is its stdin and stdout. */
void	 filter_proc_attach(const char *name, int fd);
const char *filter_event_name(enum filter_event);
const char *filter_phase_name(enum fphase);

/* filter_module.c */
extern const struct filter_ops filter_module_ops;
/* The instance for a `module` or builtin filter, created on first use. */
void	*filter_module_get(const struct filter *);
/* In the lookup role, before the first session. */
void	 filter_module_init(void);

#endif /* FILTER_H */
