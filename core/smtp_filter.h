/*
 * smtp_filter.h - what smtp_session.c calls to talk to the lookup role's
 * filter chains (smtp_filter.c).
 */
#ifndef SMTP_FILTER_H
#define SMTP_FILTER_H

struct evbuffer;

/*
 * self and peer: the session's addresses (as a PROXY header gave them);
 * name: the client's reverse name (NULL: none); fcrdns: it resolves back.
 */
void	smtp_filter_begin(uint64_t sid, const char *chain,
	    const struct sockaddr_storage *self,
	    const struct sockaddr_storage *peer, const char *name, int fcrdns);
void	smtp_filter_report(uint64_t sid, enum filter_event, size_t n, ...);
void	smtp_filter_phase(uint64_t sid, enum fphase, const char *param);
void	smtp_filter_data(uint64_t sid, struct evbuffer *);
void	smtp_filter_end(uint64_t sid);
int	smtp_filter_addr(const char *arg, const char *prefix, char *out,
	    size_t len, const char **after);

#endif /* SMTP_FILTER_H */
