/*
 * smtp_tls.c - TLS for inbound SMTP sessions, with libtls.
 *
 * Setup runs in the parent, as root, before any role is forked (and for
 * `smtpd -n`): every pki and ca file is read into memory and one libtls
 * server context is built per TLS listener, so a missing or unreadable
 * file, a key file others can read, a key that does not match its
 * certificate or a bad cipher or protocol string stops the daemon at
 * start with the file:line that named it.  The smtp role inherits the
 * contexts in memory: it runs chrooted as _smtpd and never opens a key
 * file.  Every other process drops them right after fork, so delivery
 * workers never carry a private key.
 *
 * In the smtp role a session's socket bufferevent is wrapped in a filter
 * bufferevent whose input and output filters run libtls (tls_accept_cbs)
 * over the socket bufferevent's buffers: the session keeps reading lines
 * from and writing replies to a bufferevent, in clear text.  Failures are
 * reported to the session as a deferred BEV_EVENT_ERROR with the libtls
 * message kept for its log line.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include <tls.h>

#include "smtpd.h"

/* Protocols and ciphers when the configuration names none. */
#define TLS_DEFAULT_PROTOCOLS	"secure"	/* TLSv1.2 and TLSv1.3 */
#define TLS_DEFAULT_CIPHERS	"HIGH:!aNULL:!MD5"	/* smtpd.conf(5) */
/* Far above any certificate chain or CA bundle; bounds a mistaken path. */
#define TLS_FILE_MAX		(16 * 1024 * 1024)
/* Plain text handed to libtls at once: one TLS record. */
#define TLS_CHUNK		16384

/* ------------------------------------------------------- parent: setup */

/* A file read into memory; zeroed before it is freed (it may be a key). */
struct tls_file {
	uint8_t	*data;
	size_t	 len;
};

/* The files of one pki, read once however many listeners use it. */
struct pki_files {
	const struct pki	*pki;
	struct tls_file		 cert;
	struct tls_file		 key;
};

static void
tls_file_free(struct tls_file *f)
{
	if (f->data != NULL) {
		explicit_bzero(f->data, f->len);
		free(f->data);
	}
	f->data = NULL;
	f->len = 0;
}

/*
 * Reads path into f; -1 with *why set to a short reason.  A key file must
 * belong to root (or to the user running an unprivileged daemon), give
 * others no access and its group no write access: 0600, or 0640 with a
 * group such as Debian's ssl-cert that lets other servers share the key.
 */
static int
tls_file_read(const char *path, int is_key, struct tls_file *f,
    char *why, size_t whylen)
{
	struct stat	 sb;
	ssize_t		 n;
	size_t		 off = 0;
	int		 fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) == -1) {
		snprintf(why, whylen, "%s", strerror(errno));
		return -1;
	}
	if (fstat(fd, &sb) == -1) {
		snprintf(why, whylen, "%s", strerror(errno));
		close(fd);
		return -1;
	}
	if (!S_ISREG(sb.st_mode) || sb.st_size <= 0 ||
	    sb.st_size > TLS_FILE_MAX) {
		snprintf(why, whylen, "%s", !S_ISREG(sb.st_mode) ?
		    "not a regular file" : sb.st_size <= 0 ? "empty file" :
		    "file too large");
		close(fd);
		return -1;
	}
	if (is_key && ((sb.st_uid != 0 && sb.st_uid != geteuid()) ||
	    (sb.st_mode & (S_IWGRP | S_IRWXO)))) {
		snprintf(why, whylen, "insecure owner or permissions (uid %u,"
		    " mode %04o): a key file must belong to root, give others"
		    " no access and its group no write access (chmod 600 or"
		    " 640)", (unsigned)sb.st_uid,
		    (unsigned)(sb.st_mode & 07777));
		close(fd);
		return -1;
	}
	f->len = sb.st_size;
	f->data = xmalloc(f->len);
	while (off < f->len) {
		n = read(fd, f->data + off, f->len - off);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0) {
			snprintf(why, whylen, "%s", n == 0 ?
			    "file shrank while read" : strerror(errno));
			close(fd);
			tls_file_free(f);
			return -1;
		}
		off += n;
	}
	close(fd);
	return 0;
}

struct tls_setup {
	struct config		*conf;
	struct pki_files	*pkis;
	size_t			 npkis;
};

/*
 * A server context with this pair alone: a key that does not match its
 * certificate is reported at the pki, not at some listener using it.
 */
static int
check_pair(struct pki_files *pf)
{
	const struct pki *pk = pf->pki;
	struct tls_config *cfg;
	struct tls	*srv;
	int		 rc = 0;

	if ((cfg = tls_config_new()) == NULL || (srv = tls_server()) == NULL)
		fatal("tls_config_new");
	if (tls_config_set_keypair_mem(cfg, pf->cert.data, pf->cert.len,
	    pf->key.data, pf->key.len) == -1) {
		log_warnx("%s:%d: pki \"%s\": %s (cert \"%s\", key \"%s\")",
		    pk->file, pk->line, pk->name, tls_config_error(cfg),
		    pk->cert, pk->key);
		rc = -1;
	} else if (tls_configure(srv, cfg) == -1) {
		log_warnx("%s:%d: pki \"%s\": %s: does the key \"%s\" belong"
		    " to the certificate \"%s\"?", pk->file, pk->line, pk->name,
		    tls_error(srv), pk->key, pk->cert);
		rc = -1;
	}
	tls_free(srv);
	tls_config_clear_keys(cfg);
	tls_config_free(cfg);
	return rc;
}

static int
read_pki(struct pki_files *pf)
{
	const struct pki *pk = pf->pki;
	char		 why[256];

	if (tls_file_read(pk->cert, 0, &pf->cert, why, sizeof(why)) == -1) {
		log_warnx("%s:%d: pki \"%s\": cannot read the certificate file"
		    " \"%s\": %s", pk->file, pk->line, pk->name, pk->cert, why);
		return -1;
	}
	if (tls_file_read(pk->key, 1, &pf->key, why, sizeof(why)) == -1) {
		log_warnx("%s:%d: pki \"%s\": cannot read the key file \"%s\":"
		    " %s", pk->file, pk->line, pk->name, pk->key, why);
		return -1;
	}
	return check_pair(pf);
}

/* Every declared pki, so an unused or relay-only one is checked too. */
static int
read_pkis(struct tls_setup *ts)
{
	const struct pki *pk;
	size_t		 n = 0;

	TAILQ_FOREACH(pk, &ts->conf->pkis, entry)
		n++;
	ts->pkis = xcalloc(n, sizeof(*ts->pkis));
	TAILQ_FOREACH(pk, &ts->conf->pkis, entry) {
		ts->pkis[ts->npkis].pki = pk;
		if (read_pki(&ts->pkis[ts->npkis++]) == -1)
			return -1;
	}
	return 0;
}

static int
check_cas(const struct config *conf)
{
	const struct ca	*ca;
	struct tls_file	 f = { NULL, 0 };
	char		 why[256];

	TAILQ_FOREACH(ca, &conf->cas, entry) {
		if (tls_file_read(ca->cert, 0, &f, why, sizeof(why)) == -1) {
			log_warnx("%s:%d: ca \"%s\": cannot read the CA file"
			    " \"%s\": %s", ca->file, ca->line, ca->name,
			    ca->cert, why);
			return -1;
		}
		tls_file_free(&f);
	}
	return 0;
}

static struct pki_files *
pki_files_find(struct tls_setup *ts, const char *name)
{
	size_t	 i;

	for (i = 0; i < ts->npkis; i++)
		if (strcmp(ts->pkis[i].pki->name, name) == 0)
			return &ts->pkis[i];
	return NULL;
}

static const char *
dhe_name(int dhe)
{
	return dhe == DHE_AUTO ? "auto" : dhe == DHE_LEGACY ? "legacy" :
	    "none";
}

/* The first pki is the default certificate; the others answer SNI. */
static int
listener_keypairs(struct tls_setup *ts, const struct listen_conf *lc,
    struct tls_config *cfg)
{
	struct pki_files *pf;
	size_t		 i;
	int		 rc;

	for (i = 0; i < lc->npki; i++) {
		if ((pf = pki_files_find(ts, lc->pki[i])) == NULL)
			fatalx("tls: pki %s not loaded", lc->pki[i]);
		if (i == 0)
			rc = tls_config_set_keypair_mem(cfg, pf->cert.data,
			    pf->cert.len, pf->key.data, pf->key.len);
		else
			rc = tls_config_add_keypair_mem(cfg, pf->cert.data,
			    pf->cert.len, pf->key.data, pf->key.len);
		if (rc == -1 || (i == 0 && tls_config_set_dheparams(cfg,
		    dhe_name(pf->pki->dhe)) == -1)) {
			log_warnx("%s:%d: pki \"%s\": %s", pf->pki->file,
			    pf->pki->line, pf->pki->name,
			    tls_config_error(cfg));
			return -1;
		}
	}
	return 0;
}

static const struct ca *
ca_find(const struct config *conf, const char *name)
{
	const struct ca	*ca;

	TAILQ_FOREACH(ca, &conf->cas, entry)
		if (strcmp(ca->name, name) == 0)
			return ca;
	return NULL;
}

/* Client certificates are asked for only where the listener verifies. */
static int
listener_verify(struct tls_setup *ts, const struct listen_conf *lc,
    struct tls_config *cfg)
{
	const struct ca	*ca = NULL;
	struct tls_file	 f = { NULL, 0 };
	const char	*path;
	char		 why[256];
	int		 rc;

	if (!(lc->flags & LO_TLS_VERIFY))
		return 0;
	if (lc->ca != NULL && (ca = ca_find(ts->conf, lc->ca)) == NULL)
		fatalx("tls: ca %s not found", lc->ca);
	path = ca ? ca->cert : tls_default_ca_cert_file();
	if (tls_file_read(path, 0, &f, why, sizeof(why)) == -1) {
		log_warnx("%s:%d: listen on \"%s\": cannot read the CA file"
		    " \"%s\" to verify clients: %s", lc->file, lc->line, lc->on,
		    path, why);
		return -1;
	}
	rc = tls_config_set_ca_mem(cfg, f.data, f.len);
	tls_file_free(&f);
	if (rc == -1) {
		log_warnx("%s:%d: listen on \"%s\": CA file \"%s\": %s",
		    lc->file, lc->line, lc->on, path, tls_config_error(cfg));
		return -1;
	}
	tls_config_verify_client(cfg);
	return 0;
}

static int
listener_params(struct tls_setup *ts, const struct listen_conf *lc,
    struct tls_config *cfg)
{
	const char	*protos = lc->protocols ? lc->protocols :
	    TLS_DEFAULT_PROTOCOLS;
	const char	*ciphers = lc->ciphers ? lc->ciphers :
	    ts->conf->smtp_ciphers ? ts->conf->smtp_ciphers :
	    TLS_DEFAULT_CIPHERS;
	uint32_t	 p;

	if (tls_config_parse_protocols(&p, protos) == -1 ||
	    tls_config_set_protocols(cfg, p) == -1) {
		log_warnx("%s:%d: listen on \"%s\": invalid protocols \"%s\""
		    " (see tls_config_parse_protocols(3))", lc->file, lc->line,
		    lc->on, protos);
		return -1;
	}
	if (tls_config_set_ciphers(cfg, ciphers) == -1) {
		log_warnx("%s:%d: listen on \"%s\": invalid ciphers \"%s\": %s",
		    lc->file, lc->line, lc->on, ciphers, tls_config_error(cfg));
		return -1;
	}
	return 0;
}

static int
listener_setup(struct tls_setup *ts, struct listen_conf *lc)
{
	struct tls_config *cfg;
	struct tls	*srv = NULL;
	int		 rc = -1;

	if (lc->npki == 0) {
		log_warnx("%s:%d: listen on \"%s\": %s needs a certificate:"
		    " add pki NAME", lc->file, lc->line, lc->on,
		    (lc->flags & LO_SMTPS) ? "smtps" : "tls");
		return -1;
	}
	if ((cfg = tls_config_new()) == NULL)
		fatal("tls_config_new");
	if (listener_keypairs(ts, lc, cfg) == -1 ||
	    listener_verify(ts, lc, cfg) == -1 ||
	    listener_params(ts, lc, cfg) == -1)
		goto done;
	if ((srv = tls_server()) == NULL)
		fatal("tls_server");
	if (tls_configure(srv, cfg) == -1) {
		log_warnx("%s:%d: listen on \"%s\": %s", lc->file, lc->line,
		    lc->on, tls_error(srv));
		tls_free(srv);
		goto done;
	}
	lc->tls = srv;
	rc = 0;
done:
	/* The server context holds what it needs; no key stays in cfg. */
	tls_config_clear_keys(cfg);
	tls_config_free(cfg);
	return rc;
}

/*
 * A relay's client config: CAs to verify the next hop with (the action's
 * `ca`, else the system's bundle, which may be missing: then only
 * unverified TLS can work), its `pki` as a client certificate, and its
 * protocols and ciphers.
 */
static struct tls_config *
relay_config(struct tls_setup *ts, const struct action *a, int verify)
{
	struct tls_config *cfg;
	const struct ca	*ca = NULL;
	struct pki_files *pf;
	struct tls_file	 f = { NULL, 0 };
	uint32_t	 protos;
	char		 why[256];

	if ((cfg = tls_config_new()) == NULL)
		fatal("tls_config_new");
	if (a->ca != NULL && (ca = ca_find(ts->conf, a->ca)) == NULL)
		fatalx("tls: ca %s not found", a->ca);
	if (tls_file_read(ca ? ca->cert : tls_default_ca_cert_file(), 0, &f,
	    why, sizeof(why)) == 0) {
		if (tls_config_set_ca_mem(cfg, f.data, f.len) == -1)
			goto bad;
		tls_file_free(&f);
	} else if (ca != NULL) {
		log_warnx("%s:%d: action \"%s\": cannot read the CA file"
		    " \"%s\": %s", a->file, a->line, a->name, ca->cert, why);
		goto fail;
	}
	if (a->pki != NULL) {
		if ((pf = pki_files_find(ts, a->pki)) == NULL)
			fatalx("tls: pki %s not loaded", a->pki);
		if (tls_config_set_keypair_mem(cfg, pf->cert.data,
		    pf->cert.len, pf->key.data, pf->key.len) == -1)
			goto bad;
	}
	if (tls_config_parse_protocols(&protos, a->protocols ? a->protocols :
	    TLS_DEFAULT_PROTOCOLS) == -1 ||
	    tls_config_set_protocols(cfg, protos) == -1 ||
	    tls_config_set_ciphers(cfg, a->ciphers ? a->ciphers :
	    TLS_DEFAULT_CIPHERS) == -1)
		goto bad;
	if (!verify) {
		tls_config_insecure_noverifycert(cfg);
		tls_config_insecure_noverifyname(cfg);
	}
	return cfg;
bad:
	log_warnx("%s:%d: action \"%s\": %s", a->file, a->line, a->name,
	    tls_config_error(cfg));
fail:
	tls_file_free(&f);
	tls_config_free(cfg);
	return NULL;
}

static int
relays_setup(struct tls_setup *ts)
{
	struct action	*a;

	TAILQ_FOREACH(a, &ts->conf->actions, entry) {
		if (a->method != A_RELAY)
			continue;
		if ((a->tls_verify = relay_config(ts, a, 1)) == NULL ||
		    (a->tls_noverify = relay_config(ts, a, 0)) == NULL)
			return -1;
	}
	return 0;
}

static int
listens_tls(const struct listen_conf *lc)
{
	return (lc->flags & (LO_TLS | LO_SMTPS)) != 0;
}

int
smtp_tls_setup(struct config *conf)
{
	struct tls_setup	 ts = { conf, NULL, 0 };
	struct listen_conf	*lc;
	size_t			 i;
	int			 rc = 0;

	if (tls_init() == -1)
		fatalx("tls_init");
	if (read_pkis(&ts) == -1 || check_cas(conf) == -1)
		rc = -1;
	if (rc == 0)
		TAILQ_FOREACH(lc, &conf->listen_confs, entry)
			if (listens_tls(lc) && listener_setup(&ts, lc) == -1) {
				rc = -1;
				break;
			}
	if (rc == 0 && relays_setup(&ts) == -1)
		rc = -1;
	for (i = 0; i < ts.npkis; i++) {
		tls_file_free(&ts.pkis[i].cert);
		tls_file_free(&ts.pkis[i].key);
	}
	free(ts.pkis);
	return rc;
}

void
smtp_tls_forget(struct config *conf)
{
	struct listen_conf	*lc;
	struct action		*a;

	TAILQ_FOREACH(a, &conf->actions, entry) {
		tls_config_free(a->tls_verify);
		tls_config_free(a->tls_noverify);
		a->tls_verify = a->tls_noverify = NULL;
	}

	TAILQ_FOREACH(lc, &conf->listen_confs, entry)
		if (lc->tls != NULL) {
			tls_free(lc->tls);
			lc->tls = NULL;
		}
}

/* ------------------------------------------------- smtp role: sessions */

struct smtp_tls {
	struct tls		*cctx;
	struct bufferevent	*bev;		/* the filter: the session's */
	struct bufferevent	*raw;		/* the socket's, under it */
	struct evbuffer_cb_entry *drain;	/* on raw's output */
	void			(*ready)(void *);
	void			*arg;
	int			 established;
	int			 failed;
	int			 eof;		/* close_notify received */
	char			 error[256];
};

/* libtls reads ciphertext from what the socket bufferevent received. */
static ssize_t
tls_cb_read(struct tls *ctx, void *buf, size_t len, void *arg)
{
	struct smtp_tls	*t = arg;
	int		 n;

	n = evbuffer_remove(bufferevent_get_input(t->raw), buf, len);
	if (n == 0)
		return TLS_WANT_POLLIN;
	return n < 0 ? -1 : n;
}

/* ... and writes into its output buffer, which never refuses. */
static ssize_t
tls_cb_write(struct tls *ctx, const void *buf, size_t len, void *arg)
{
	struct smtp_tls	*t = arg;

	if (evbuffer_add(bufferevent_get_output(t->raw), buf, len) == -1)
		return -1;
	return len;
}

/*
 * The session hears of it through its event callback, deferred: nothing
 * may free the bufferevent from inside one of its own filters.  libtls'
 * messages already say what failed ("handshake failed: ...").
 */
static enum bufferevent_filter_result
tls_fail(struct smtp_tls *t, const char *what)
{
	const char	*e = tls_error(t->cctx);

	if (!t->failed) {
		snprintf(t->error, sizeof(t->error), "%s", e ? e : what);
		t->failed = 1;
		bufferevent_trigger_event(t->bev, BEV_EVENT_ERROR,
		    BEV_TRIG_DEFER_CALLBACKS);
	}
	return BEV_ERROR;
}

/*
 * Ciphertext in, plain text out.  The limit is not applied to tls_read:
 * plain text left inside libtls would wait for the next ciphertext to be
 * read.  The filter bufferevent stops reading the socket once its input
 * is above the session's watermark, which bounds the memory anyway.
 */
static enum bufferevent_filter_result
tls_filter_in(struct evbuffer *src, struct evbuffer *dst, ev_ssize_t lim,
    enum bufferevent_flush_mode mode, void *arg)
{
	struct smtp_tls	*t = arg;
	char		 buf[TLS_CHUNK];
	ssize_t		 n;
	int		 rc;

	/*
	 * Nothing more is read then: drop the input, or libevent would call
	 * again and again while the socket's buffer is not empty.
	 */
	if (t->failed || t->eof) {
		evbuffer_drain(src, evbuffer_get_length(src));
		return BEV_ERROR;
	}
	if (!t->established) {
		rc = tls_handshake(t->cctx);
		if (rc == TLS_WANT_POLLIN || rc == TLS_WANT_POLLOUT)
			return BEV_NEED_MORE;
		if (rc == -1)
			return tls_fail(t, "handshake failed");
		t->established = 1;
		t->ready(t->arg);
		if (t->failed)
			return BEV_ERROR;
	}
	for (;;) {
		n = tls_read(t->cctx, buf, sizeof(buf));
		if (n == TLS_WANT_POLLIN || n == TLS_WANT_POLLOUT)
			return BEV_OK;
		if (n == -1)
			return tls_fail(t, "read failed");
		if (n == 0) {
			/* close_notify: the same as the peer closing. */
			t->eof = 1;
			evbuffer_drain(src, evbuffer_get_length(src));
			bufferevent_trigger_event(t->bev, BEV_EVENT_EOF,
			    BEV_TRIG_DEFER_CALLBACKS);
			return BEV_OK;
		}
		if (evbuffer_add(dst, buf, n) == -1)
			fatalx("smtp: evbuffer_add");
	}
}

/* Plain text in, ciphertext out; held back until the handshake is done. */
static enum bufferevent_filter_result
tls_filter_out(struct evbuffer *src, struct evbuffer *dst, ev_ssize_t lim,
    enum bufferevent_flush_mode mode, void *arg)
{
	struct smtp_tls	*t = arg;
	size_t		 len;
	ssize_t		 n;

	if (t->failed)
		return BEV_ERROR;
	if (!t->established)
		return BEV_NEED_MORE;
	while ((len = evbuffer_get_length(src)) > 0) {
		if (len > TLS_CHUNK)
			len = TLS_CHUNK;
		n = tls_write(t->cctx, evbuffer_pullup(src, len), len);
		if (n == TLS_WANT_POLLIN || n == TLS_WANT_POLLOUT)
			return BEV_NEED_MORE;
		if (n == -1)
			return tls_fail(t, "write failed");
		evbuffer_drain(src, n);
	}
	return BEV_OK;
}

/*
 * The filter's write callback runs when the plain text has gone into
 * libtls, not when the ciphertext has left: tell the session again once
 * the socket's output is empty, so a closing session can wait for both.
 */
static void
tls_raw_drained(struct evbuffer *buf, const struct evbuffer_cb_info *info,
    void *arg)
{
	struct smtp_tls	*t = arg;

	if (info->n_deleted > 0 && evbuffer_get_length(buf) == 0 && t->bev)
		bufferevent_trigger(t->bev, EV_WRITE,
		    BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
}

/* Runs when the filter bufferevent is destroyed; raw is still alive. */
static void
tls_conn_free(void *arg)
{
	struct smtp_tls	*t = arg;

	if (t->drain != NULL)
		evbuffer_remove_cb_entry(bufferevent_get_output(t->raw),
		    t->drain);
	tls_free(t->cctx);
	free(t);
}

struct bufferevent *
smtp_tls_wrap(struct bufferevent *raw, const struct listen_conf *lc,
    void (*ready)(void *), void *arg, struct smtp_tls **tp)
{
	struct smtp_tls	*t;

	if (lc->tls == NULL)
		fatalx("smtp: TLS listener %s:%d has no context", lc->file,
		    lc->line);
	t = xcalloc(1, sizeof(*t));
	t->raw = raw;
	t->ready = ready;
	t->arg = arg;
	if (tls_accept_cbs(lc->tls, &t->cctx, tls_cb_read, tls_cb_write,
	    t) == -1) {
		log_warnx("smtp: tls_accept_cbs: %s", tls_error(lc->tls));
		free(t);
		return NULL;
	}
	t->bev = bufferevent_filter_new(raw, tls_filter_in, tls_filter_out,
	    BEV_OPT_CLOSE_ON_FREE, tls_conn_free, t);
	if (t->bev == NULL) {
		tls_free(t->cctx);
		free(t);
		return NULL;
	}
	t->drain = evbuffer_add_cb(bufferevent_get_output(raw),
	    tls_raw_drained, t);
	if (t->drain == NULL)
		fatalx("smtp: evbuffer_add_cb");
	*tp = t;
	return t->bev;
}

struct bufferevent *
smtp_tls_wrap_client(struct bufferevent *raw, const struct action *a,
    int verify, const char *servername, void (*ready)(void *), void *arg,
    struct smtp_tls **tp)
{
	struct tls_config *cfg = verify ? a->tls_verify : a->tls_noverify;
	struct smtp_tls	*t;
	int		 rc;

	if (cfg == NULL)
		fatalx("smtp: relay action %s has no TLS config", a->name);
	t = xcalloc(1, sizeof(*t));
	t->raw = raw;
	t->ready = ready;
	t->arg = arg;
	if ((t->cctx = tls_client()) == NULL)
		fatal("tls_client");
	if (tls_configure(t->cctx, cfg) == -1 || tls_connect_cbs(t->cctx,
	    tls_cb_read, tls_cb_write, t, servername) == -1) {
		log_warnx("mta: TLS client: %s", tls_error(t->cctx));
		tls_free(t->cctx);
		free(t);
		return NULL;
	}
	t->bev = bufferevent_filter_new(raw, tls_filter_in, tls_filter_out,
	    BEV_OPT_CLOSE_ON_FREE, tls_conn_free, t);
	if (t->bev == NULL)
		fatalx("smtp: bufferevent_filter_new");
	t->drain = evbuffer_add_cb(bufferevent_get_output(raw),
	    tls_raw_drained, t);
	if (t->drain == NULL)
		fatalx("smtp: evbuffer_add_cb");
	/* The client speaks first: the ClientHello goes out now. */
	rc = tls_handshake(t->cctx);
	if (rc == -1) {
		snprintf(t->error, sizeof(t->error), "%s",
		    tls_error(t->cctx) ? tls_error(t->cctx) : "handshake");
		t->failed = 1;
		bufferevent_trigger_event(t->bev, BEV_EVENT_ERROR,
		    BEV_TRIG_DEFER_CALLBACKS);
	}
	*tp = t;
	return t->bev;
}

int
smtp_tls_established(const struct smtp_tls *t)
{
	return t->established && !t->failed;
}

const char *
smtp_tls_error(const struct smtp_tls *t)
{
	return t->failed ? t->error : NULL;
}

/* "TLSv1.3:TLS_AES_256_GCM_SHA384:256", OpenSMTPD's tls_to_text(). */
void
smtp_tls_text(const struct smtp_tls *t, char *buf, size_t len)
{
	const char	*v = tls_conn_version(t->cctx);
	const char	*c = tls_conn_cipher(t->cctx);

	snprintf(buf, len, "%s:%s:%d", v ? v : "unknown", c ? c : "unknown",
	    tls_conn_cipher_strength(t->cctx));
}

int
smtp_tls_peer_cert(const struct smtp_tls *t)
{
	return tls_peer_cert_provided(t->cctx) == 1;
}

const char *
smtp_tls_peer_hash(const struct smtp_tls *t)
{
	const char	*h = tls_peer_cert_hash(t->cctx);

	return h ? h : "";
}

size_t
smtp_tls_unsent(const struct smtp_tls *t)
{
	return evbuffer_get_length(bufferevent_get_output(t->raw));
}

/* close_notify after the last reply; the peer's is not waited for. */
void
smtp_tls_close(struct smtp_tls *t)
{
	if (smtp_tls_established(t))
		(void)tls_close(t->cctx);
}
