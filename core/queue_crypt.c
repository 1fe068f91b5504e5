/*
 * queue_crypt.c - how the queue stores its files: `queue compression`
 * (zlib deflate) and `queue encryption` (AES-256-GCM), and the key.
 *
 * Every file written while either is on starts with a header that says
 * how the rest is stored, so a spool may mix files written under
 * different settings and each is read the way it was written:
 *
 *	magic		4 bytes	 0x89 'M' 'S' 'Q' (no message or JSON
 *				 envelope starts with 0x89)
 *	version		1 byte	 1
 *	flags		1 byte	 0x01 deflate, 0x02 AES-256-GCM
 *	reserved	2 bytes	 0
 *	key id		8 bytes	 } only with AES-256-GCM: a hash of the key,
 *	iv		12 bytes } so a wrong key is told from a corrupt file
 *	payload			 deflated (if so), then encrypted (if so)
 *	tag		16 bytes only with AES-256-GCM; the header is its AAD
 *
 * A file without the header is stored as is (written with both off).
 * With encryption on, only encrypted files are read: GCM is what tells a
 * file we wrote from one put in the spool by someone without the key.
 *
 * The key is OpenSMTPD's: 32 characters used as the 32 bytes of the AES
 * key (what `openssl rand -hex 16` prints).  Only the queue role keeps it;
 * the others wipe it after fork (qcrypt_forget).
 *
 * Decoding writes its output before the GCM tag is checked at the end:
 * callers discard the output of a failed decode.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <zlib.h>

#include "smtpd.h"

#define QC_MAGIC		"\x89MSQ"
#define QC_MAGIC_LEN		4
#define QC_VERSION		1
#define QC_F_DEFLATE		0x01
#define QC_F_AESGCM		0x02
#define QC_HDR_BASE		8	/* magic, version, flags, reserved */
#define QC_KEYID_LEN		8
#define QC_IV_LEN		12
#define QC_TAG_LEN		16
#define QC_HDR_MAX		(QC_HDR_BASE + QC_KEYID_LEN + QC_IV_LEN)
#define QC_CHUNK		(64 * 1024)
/* Fast and still 3-4x on mail text: queue files live for seconds. */
#define QC_ZLEVEL		1
/* Inflated envelopes: far above any real one, bounds a hostile file. */
#define QC_BUF_MAX		(64UL * 1024 * 1024)

static struct {
	int		 compress;
	int		 have_key;
	unsigned char	 key[QCRYPT_KEY_LEN];
	unsigned char	 keyid[QC_KEYID_LEN];
} qc;

/* ------------------------------------------------------------- settings */

static void
key_id(const unsigned char *key, unsigned char *id)
{
	static const char	 label[] = "modsmtpd queue key id";
	unsigned char		 md[EVP_MAX_MD_SIZE], buf[sizeof(label) +
				    QCRYPT_KEY_LEN];
	unsigned int		 mdlen = 0;

	memcpy(buf, label, sizeof(label));
	memcpy(buf + sizeof(label), key, QCRYPT_KEY_LEN);
	if (EVP_Digest(buf, sizeof(buf), md, &mdlen, EVP_sha256(), NULL) != 1 ||
	    mdlen < QC_KEYID_LEN)
		fatalx("queue: cannot hash the queue key");
	memcpy(id, md, QC_KEYID_LEN);
	OPENSSL_cleanse(buf, sizeof(buf));
}

int
qcrypt_set_key(const char *key, size_t len)
{
	if (len != QCRYPT_KEY_LEN)
		return -1;
	memcpy(qc.key, key, QCRYPT_KEY_LEN);
	key_id(qc.key, qc.keyid);
	qc.have_key = 1;
	return 0;
}

void
qcrypt_set_compress(int on)
{
	qc.compress = on != 0;
}

void
qcrypt_forget(void)
{
	OPENSSL_cleanse(qc.key, sizeof(qc.key));
	qc.have_key = 0;
}

int
qcrypt_active(void)
{
	return qc.compress || qc.have_key;
}

int
qcrypt_encrypting(void)
{
	return qc.have_key;
}

/*
 * Packed, or a packed file whose magic took a hit: one byte off in four
 * still counts, so a damaged header is reported rather than the file
 * passed on as plain.  Plain files start with a header line or "{".
 */
int
qcrypt_is_packed(const void *head, size_t len)
{
	const unsigned char	*h = head;
	size_t			 i, n = len < QC_MAGIC_LEN ? len : QC_MAGIC_LEN;
	size_t			 same = 0;

	for (i = 0; i < n; i++)
		same += h[i] == (unsigned char)QC_MAGIC[i];
	if (n == 0)
		return 0;
	return same >= (n == QC_MAGIC_LEN ? n - 1 : n);
}

/* ------------------------------------------------------- input, output */

/* A descriptor read with pread (its offset is left alone) or a buffer. */
struct qc_in {
	int			 fd;
	const unsigned char	*buf;
	off_t			 size;
};

/* A descriptor written at its offset, or a buffer that grows. */
struct qc_out {
	int		 fd;
	unsigned char	*buf;
	size_t		 len;
	size_t		 cap;
};

static int
in_read(const struct qc_in *in, off_t off, unsigned char *p, size_t n,
    char *err, size_t errlen)
{
	ssize_t	 r;

	if (off < 0 || (off_t)n > in->size - off) {
		snprintf(err, errlen, "read past the end of the file");
		return -1;
	}
	if (in->fd == -1) {
		memcpy(p, in->buf + off, n);
		return 0;
	}
	while (n > 0) {
		r = pread(in->fd, p, n, off);
		if (r == -1 && errno == EINTR)
			continue;
		if (r <= 0) {
			snprintf(err, errlen, "read: %s", r == 0 ?
			    "the file shrank while being read" : strerror(errno));
			return -1;
		}
		p += r;
		n -= r;
		off += r;
	}
	return 0;
}

static int
out_write(struct qc_out *o, const unsigned char *p, size_t n, char *err,
    size_t errlen)
{
	ssize_t	 r;
	size_t	 cap;

	if (o->fd != -1) {
		while (n > 0) {
			if ((r = write(o->fd, p, n)) == -1) {
				if (errno == EINTR)
					continue;
				snprintf(err, errlen, "write: %s",
				    strerror(errno));
				return -1;
			}
			p += r;
			n -= r;
		}
		return 0;
	}
	if (n == 0)
		return 0;
	if (n > QC_BUF_MAX - o->len) {
		snprintf(err, errlen, "more than %lu bytes once decoded",
		    QC_BUF_MAX);
		return -1;
	}
	if (o->len + n > o->cap) {
		cap = o->cap ? o->cap : 4096;
		while (cap < o->len + n)
			cap *= 2;
		o->buf = xreallocarray(o->buf, cap, 1);
		o->cap = cap;
	}
	memcpy(o->buf + o->len, p, n);
	o->len += n;
	return 0;
}

/* --------------------------------------------------------------- stages */

/*
 * One encode or decode: deflate/inflate, then or before AES-GCM.  The
 * queue packs a file at a time, so one of these is reused, zlib streams
 * and cipher context included: setting up deflate costs more than
 * compressing a 2 KB message.
 */
struct qc_work {
	int		 flags;
	z_stream	*z;		/* deflater or inflater */
	int		 z_end;		/* inflate saw the end of the stream */
	int		 z_bad;		/* inflate failed: only the tag is left */
	char		 z_err[128];
	EVP_CIPHER_CTX	*c;
	struct qc_out	*out;
	char		*err;
	size_t		 errlen;
	unsigned char	 zbuf[QC_CHUNK];
	unsigned char	 cbuf[QC_CHUNK];
};

static struct qc_work	 work;
static z_stream		 deflater, inflater;
static int		 deflater_live, inflater_live;

static z_stream *
zstream(int decoding)
{
	z_stream	*z = decoding ? &inflater : &deflater;
	int		*live = decoding ? &inflater_live : &deflater_live;
	int		 r;

	if (*live)
		r = decoding ? inflateReset(z) : deflateReset(z);
	else
		r = decoding ? inflateInit(z) : deflateInit(z, QC_ZLEVEL);
	if (r != Z_OK)
		fatalx("queue: zlib initialisation failed (%d)", r);
	*live = 1;
	return z;
}

static struct qc_work *
work_new(int flags, int decoding, struct qc_out *out, char *err,
    size_t errlen)
{
	struct qc_work	*w = &work;

	w->flags = flags;
	w->z = (flags & QC_F_DEFLATE) ? zstream(decoding) : NULL;
	w->z_end = w->z_bad = 0;
	w->z_err[0] = '\0';
	w->out = out;
	w->err = err;
	w->errlen = errlen;
	if (w->c == NULL && (w->c = EVP_CIPHER_CTX_new()) == NULL)
		fatalx("queue: EVP_CIPHER_CTX_new failed");
	return w;
}

static void
work_free(struct qc_work *w)
{
	/* The key schedule goes; the buffers stay for the next file. */
	EVP_CIPHER_CTX_reset(w->c);
}

/* Encode, last stage: encrypt (or not) and write. */
static int
seal(struct qc_work *w, const unsigned char *p, size_t n)
{
	size_t	 k;
	int	 outl;

	if (!(w->flags & QC_F_AESGCM))
		return out_write(w->out, p, n, w->err, w->errlen);
	while (n > 0) {
		k = n < QC_CHUNK ? n : QC_CHUNK;
		if (EVP_EncryptUpdate(w->c, w->cbuf, &outl, p, (int)k) != 1) {
			snprintf(w->err, w->errlen, "encryption failed");
			return -1;
		}
		if (out_write(w->out, w->cbuf, (size_t)outl, w->err,
		    w->errlen) == -1)
			return -1;
		p += k;
		n -= k;
	}
	return 0;
}

/* Encode, first stage: deflate (or not), then seal. */
static int
squeeze(struct qc_work *w, const unsigned char *p, size_t n, int finish)
{
	int	 r;

	if (!(w->flags & QC_F_DEFLATE))
		return n > 0 ? seal(w, p, n) : 0;
	w->z->next_in = (unsigned char *)(uintptr_t)p;
	w->z->avail_in = (uInt)n;
	do {
		w->z->next_out = w->zbuf;
		w->z->avail_out = sizeof(w->zbuf);
		r = deflate(w->z, finish ? Z_FINISH : Z_NO_FLUSH);
		if (r == Z_STREAM_ERROR) {
			snprintf(w->err, w->errlen, "compression failed");
			return -1;
		}
		if (seal(w, w->zbuf, sizeof(w->zbuf) - w->z->avail_out) == -1)
			return -1;
	} while (w->z->avail_out == 0 || (finish && r != Z_STREAM_END));
	return 0;
}

/* Decode, last stage: inflate (or not) and write. */
static int
expand(struct qc_work *w, const unsigned char *p, size_t n)
{
	int	 r;

	if (!(w->flags & QC_F_DEFLATE))
		return out_write(w->out, p, n, w->err, w->errlen);
	if (w->z_bad || n == 0)
		return 0;
	if (w->z_end) {
		snprintf(w->z_err, sizeof(w->z_err), "data after the end of "
		    "the compressed stream");
		w->z_bad = 1;
		return 0;
	}
	w->z->next_in = (unsigned char *)(uintptr_t)p;
	w->z->avail_in = (uInt)n;
	do {
		w->z->next_out = w->zbuf;
		w->z->avail_out = sizeof(w->zbuf);
		r = inflate(w->z, Z_NO_FLUSH);
		if (r != Z_OK && r != Z_STREAM_END && r != Z_BUF_ERROR) {
			/* With GCM, the tag says whether this is corruption. */
			snprintf(w->z_err, sizeof(w->z_err), "corrupt compressed"
			    " data (%s)", w->z->msg ? w->z->msg : "zlib error");
			w->z_bad = 1;
			return 0;
		}
		if (out_write(w->out, w->zbuf, sizeof(w->zbuf) -
		    w->z->avail_out, w->err, w->errlen) == -1)
			return -1;
		if (r == Z_STREAM_END) {
			w->z_end = 1;
			if (w->z->avail_in > 0) {
				snprintf(w->z_err, sizeof(w->z_err), "data "
				    "after the end of the compressed stream");
				w->z_bad = 1;
			}
			return 0;
		}
		/* Room left in the output: the input is all consumed. */
	} while (w->z->avail_out == 0);
	return 0;
}

/* Decode, first stage: decrypt (or not), then expand. */
static int
unseal(struct qc_work *w, const unsigned char *p, size_t n)
{
	int	 outl;

	if (!(w->flags & QC_F_AESGCM))
		return expand(w, p, n);
	/* n is at most QC_CHUNK: callers read in chunks of that size. */
	if (EVP_DecryptUpdate(w->c, w->cbuf, &outl, p, (int)n) != 1) {
		snprintf(w->err, w->errlen, "decryption failed");
		return -1;
	}
	return expand(w, w->cbuf, (size_t)outl);
}

/* ---------------------------------------------------------------- encode */

static size_t
header_make(int flags, unsigned char *h)
{
	size_t	 len = QC_HDR_BASE;

	memcpy(h, QC_MAGIC, QC_MAGIC_LEN);
	h[4] = QC_VERSION;
	h[5] = (unsigned char)flags;
	h[6] = h[7] = 0;
	if (flags & QC_F_AESGCM) {
		memcpy(h + len, qc.keyid, QC_KEYID_LEN);
		len += QC_KEYID_LEN;
		/* Random 96-bit IVs: one key is good for 2^32 files. */
		if (RAND_bytes(h + len, QC_IV_LEN) != 1)
			fatalx("queue: no random bytes for an IV");
		len += QC_IV_LEN;
	}
	return len;
}

static int
seal_begin(struct qc_work *w, const unsigned char *h, size_t hlen)
{
	int	 outl;

	if (!(w->flags & QC_F_AESGCM))
		return 0;
	if (EVP_EncryptInit_ex(w->c, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
	    EVP_CIPHER_CTX_ctrl(w->c, EVP_CTRL_GCM_SET_IVLEN, QC_IV_LEN,
	    NULL) != 1 ||
	    EVP_EncryptInit_ex(w->c, NULL, NULL, qc.key,
	    h + QC_HDR_BASE + QC_KEYID_LEN) != 1 ||
	    EVP_EncryptUpdate(w->c, NULL, &outl, h, (int)hlen) != 1) {
		snprintf(w->err, w->errlen, "cannot start the encryption");
		return -1;
	}
	return 0;
}

static int
seal_end(struct qc_work *w)
{
	unsigned char	 tag[QC_TAG_LEN];
	int		 outl;

	if (!(w->flags & QC_F_AESGCM))
		return 0;
	if (EVP_EncryptFinal_ex(w->c, w->cbuf, &outl) != 1 ||
	    EVP_CIPHER_CTX_ctrl(w->c, EVP_CTRL_GCM_GET_TAG, QC_TAG_LEN,
	    tag) != 1) {
		snprintf(w->err, w->errlen, "cannot finish the encryption");
		return -1;
	}
	if (outl > 0 && out_write(w->out, w->cbuf, (size_t)outl, w->err,
	    w->errlen) == -1)
		return -1;
	return out_write(w->out, tag, sizeof(tag), w->err, w->errlen);
}

static int
pack(const struct qc_in *in, struct qc_out *out, char *err, size_t errlen)
{
	unsigned char	 h[QC_HDR_MAX], buf[QC_CHUNK];
	struct qc_work	*w;
	size_t		 hlen, n;
	off_t		 off = 0;
	int		 flags, r = -1;

	flags = (qc.compress ? QC_F_DEFLATE : 0) |
	    (qc.have_key ? QC_F_AESGCM : 0);
	/* A header with no flag is never written: readers take it for damage. */
	if (flags == 0) {
		snprintf(err, errlen, "neither compression nor encryption is on");
		return -1;
	}
	w = work_new(flags, 0, out, err, errlen);
	hlen = header_make(flags, h);
	if (out_write(out, h, hlen, err, errlen) == -1 ||
	    seal_begin(w, h, hlen) == -1)
		goto done;
	while (off < in->size) {
		n = in->size - off < QC_CHUNK ? (size_t)(in->size - off) :
		    QC_CHUNK;
		if (in_read(in, off, buf, n, err, errlen) == -1 ||
		    squeeze(w, buf, n, 0) == -1)
			goto done;
		off += n;
	}
	if (squeeze(w, NULL, 0, 1) == -1 || seal_end(w) == -1)
		goto done;
	r = 0;
done:
	work_free(w);
	return r;
}

/* ---------------------------------------------------------------- decode */

/* Checks the header; *hlen is its length, *flags what it says. */
static int
header_read(const struct qc_in *in, size_t *hlen, int *flags, char *err,
    size_t errlen, unsigned char *h)
{
	if (in->size < QC_HDR_BASE) {
		snprintf(err, errlen, "truncated (%lld bytes, no complete "
		    "header)", (long long)in->size);
		return -1;
	}
	if (in_read(in, 0, h, QC_HDR_BASE, err, errlen) == -1)
		return -1;
	if (memcmp(h, QC_MAGIC, QC_MAGIC_LEN) != 0) {
		snprintf(err, errlen, "the header is damaged (bad magic)");
		return -1;
	}
	if (h[4] != QC_VERSION) {
		snprintf(err, errlen, "stored in format version %d, which "
		    "this build does not know", h[4]);
		return -1;
	}
	*flags = h[5];
	/* Nothing is ever packed with no flag: that would be a damaged one. */
	if (*flags == 0 || (*flags & ~(QC_F_DEFLATE | QC_F_AESGCM)) != 0 ||
	    h[6] || h[7]) {
		snprintf(err, errlen, "unknown storage flags 0x%02x", h[5]);
		return -1;
	}
	*hlen = QC_HDR_BASE;
	if (!(*flags & QC_F_AESGCM))
		return 0;
	*hlen = QC_HDR_MAX;
	if (in->size < (off_t)(QC_HDR_MAX + QC_TAG_LEN)) {
		snprintf(err, errlen, "truncated (%lld bytes, shorter than an "
		    "encrypted file can be)", (long long)in->size);
		return -1;
	}
	return in_read(in, QC_HDR_BASE, h + QC_HDR_BASE, QC_HDR_MAX -
	    QC_HDR_BASE, err, errlen);
}

/* Whether this process may read a file stored with flags. */
static int
flags_allowed(int flags, const unsigned char *h, char *err, size_t errlen)
{
	if (qc.have_key && !(flags & QC_F_AESGCM)) {
		snprintf(err, errlen, "stored unencrypted, but queue encryption"
		    " is on: only encrypted files are trusted (turn encryption"
		    " off to deliver what was queued before it)");
		return -1;
	}
	if (!(flags & QC_F_AESGCM))
		return 0;
	if (!qc.have_key) {
		snprintf(err, errlen, "stored encrypted, but queue encryption"
		    " is off (no key)");
		return -1;
	}
	if (CRYPTO_memcmp(h + QC_HDR_BASE, qc.keyid, QC_KEYID_LEN) != 0) {
		snprintf(err, errlen, "encrypted with another queue key");
		return -1;
	}
	return 0;
}

static int
unseal_begin(struct qc_work *w, unsigned char *h, size_t hlen,
    const struct qc_in *in)
{
	unsigned char	 tag[QC_TAG_LEN];
	int		 outl;

	if (!(w->flags & QC_F_AESGCM))
		return 0;
	if (in_read(in, in->size - QC_TAG_LEN, tag, sizeof(tag), w->err,
	    w->errlen) == -1)
		return -1;
	if (EVP_DecryptInit_ex(w->c, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
	    EVP_CIPHER_CTX_ctrl(w->c, EVP_CTRL_GCM_SET_IVLEN, QC_IV_LEN,
	    NULL) != 1 ||
	    EVP_DecryptInit_ex(w->c, NULL, NULL, qc.key,
	    h + QC_HDR_BASE + QC_KEYID_LEN) != 1 ||
	    EVP_DecryptUpdate(w->c, NULL, &outl, h, (int)hlen) != 1 ||
	    EVP_CIPHER_CTX_ctrl(w->c, EVP_CTRL_GCM_SET_TAG, QC_TAG_LEN,
	    tag) != 1) {
		snprintf(w->err, w->errlen, "cannot start the decryption");
		return -1;
	}
	return 0;
}

/* The verdict: the tag first, it explains any inflate error. */
static int
unseal_end(struct qc_work *w)
{
	int	 outl;

	if ((w->flags & QC_F_AESGCM) &&
	    EVP_DecryptFinal_ex(w->c, w->cbuf, &outl) != 1) {
		snprintf(w->err, w->errlen, "authentication failed: the file "
		    "is corrupt or truncated");
		return -1;
	}
	if (w->z_bad) {
		snprintf(w->err, w->errlen, "%s", w->z_err);
		return -1;
	}
	if ((w->flags & QC_F_DEFLATE) && !w->z_end) {
		snprintf(w->err, w->errlen, "truncated compressed data");
		return -1;
	}
	return 0;
}

static int
unpack(const struct qc_in *in, struct qc_out *out, char *err, size_t errlen)
{
	unsigned char	 h[QC_HDR_MAX], buf[QC_CHUNK];
	struct qc_work	*w;
	size_t		 hlen, n;
	off_t		 off, end;
	int		 flags, r = -1;

	if (header_read(in, &hlen, &flags, err, errlen, h) == -1 ||
	    flags_allowed(flags, h, err, errlen) == -1)
		return -1;
	w = work_new(flags, 1, out, err, errlen);
	if (unseal_begin(w, h, hlen, in) == -1)
		goto done;
	end = in->size - ((flags & QC_F_AESGCM) ? QC_TAG_LEN : 0);
	for (off = (off_t)hlen; off < end; off += n) {
		n = end - off < QC_CHUNK ? (size_t)(end - off) : QC_CHUNK;
		if (in_read(in, off, buf, n, err, errlen) == -1 ||
		    unseal(w, buf, n) == -1)
			goto done;
	}
	r = unseal_end(w);
done:
	work_free(w);
	return r;
}

/* Plain: copied as is, unless only encrypted files are to be trusted. */
static int
copy_plain(const struct qc_in *in, struct qc_out *out, char *err,
    size_t errlen)
{
	unsigned char	 buf[QC_CHUNK];
	size_t		 n;
	off_t		 off;

	if (flags_allowed(0, NULL, err, errlen) == -1)
		return -1;
	for (off = 0; off < in->size; off += n) {
		n = in->size - off < QC_CHUNK ? (size_t)(in->size - off) :
		    QC_CHUNK;
		if (in_read(in, off, buf, n, err, errlen) == -1 ||
		    out_write(out, buf, n, err, errlen) == -1)
			return -1;
	}
	return 0;
}

static int
decode(const struct qc_in *in, struct qc_out *out, char *err, size_t errlen)
{
	unsigned char	 head[QC_MAGIC_LEN];

	size_t		 n = in->size < QC_MAGIC_LEN ? (size_t)in->size :
			    QC_MAGIC_LEN;

	/* Never written: a message has a Received line, an envelope "{}". */
	if (n == 0) {
		snprintf(err, errlen, "the file is empty");
		return -1;
	}
	if (in_read(in, 0, head, n, err, errlen) == -1)
		return -1;
	if (!qcrypt_is_packed(head, n))
		return copy_plain(in, out, err, errlen);
	return unpack(in, out, err, errlen);
}

/* ------------------------------------------------------------ interface */

static int
in_fd(int fd, struct qc_in *in, char *err, size_t errlen)
{
	struct stat	 st;

	if (fstat(fd, &st) == -1) {
		snprintf(err, errlen, "fstat: %s", strerror(errno));
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "not a regular file");
		return -1;
	}
	in->fd = fd;
	in->buf = NULL;
	in->size = st.st_size;
	return 0;
}

int
qcrypt_pack_fd(int in, int out, char *err, size_t errlen)
{
	struct qc_in	 i;
	struct qc_out	 o = { out, NULL, 0, 0 };

	if (in_fd(in, &i, err, errlen) == -1)
		return -1;
	return pack(&i, &o, err, errlen);
}

int
qcrypt_unpack_fd(int in, int out, char *err, size_t errlen)
{
	struct qc_in	 i;
	struct qc_out	 o = { out, NULL, 0, 0 };

	if (in_fd(in, &i, err, errlen) == -1)
		return -1;
	return decode(&i, &o, err, errlen);
}

static int
buf_result(int r, struct qc_out *o, char **out, size_t *outlen, char *err,
    size_t errlen)
{
	/* A terminating NUL the length does not count, for JSON readers. */
	if (r == 0)
		r = out_write(o, (const unsigned char *)"", 1, err, errlen);
	if (r == -1) {
		if (o->buf)
			OPENSSL_cleanse(o->buf, o->cap);
		free(o->buf);
		*out = NULL;
		*outlen = 0;
		return -1;
	}
	*out = (char *)o->buf;
	*outlen = o->len - 1;
	return 0;
}

int
qcrypt_pack_buf(const void *in, size_t len, char **out, size_t *outlen,
    char *err, size_t errlen)
{
	struct qc_in	 i = { -1, in, (off_t)len };
	struct qc_out	 o = { -1, NULL, 0, 0 };

	return buf_result(pack(&i, &o, err, errlen), &o, out, outlen, err,
	    errlen);
}

int
qcrypt_unpack_buf(const void *in, size_t len, char **out, size_t *outlen,
    char *err, size_t errlen)
{
	struct qc_in	 i = { -1, in, (off_t)len };
	struct qc_out	 o = { -1, NULL, 0, 0 };

	return buf_result(decode(&i, &o, err, errlen), &o, out, outlen, err,
	    errlen);
}
