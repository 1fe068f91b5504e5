/*
 * test-qcrypt.c - the stored form of queue files (queue_crypt.c): round
 * trips through buffers and descriptors under compression, encryption
 * and both; and that a truncated file, any flipped byte, another key or a
 * setting that may not trust a file is refused with a reason, never
 * decoded into something else.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "smtpd.h"
#include "tap.h"

#define KEY_A	"0123456789abcdef0123456789abcdef"
#define KEY_B	"fedcba9876543210fedcba9876543210"
#define MARKER	"PLAINTEXT-MARKER-7f3a"

enum mode { M_ZLIB, M_AES, M_BOTH, NMODES };
static const char *const mode_name[NMODES] = { "compression",
    "encryption", "compression+encryption" };

static void
set_mode(enum mode m, const char *key)
{
	qcrypt_forget();
	qcrypt_set_compress(m != M_AES);
	if (m != M_ZLIB && qcrypt_set_key(key, strlen(key)) == -1)
		fatalx("test key refused");
}

static int
has(const char *buf, size_t len, const char *needle)
{
	return memmem(buf, len, needle, strlen(needle)) != NULL;
}

/* A text envelope-sized input with the marker in it. */
static const char json[] = "{\"version\":1,\"sender\":\"a@b.test\","
    "\"rcpt\":\"" MARKER "@example.org\",\"retry\":0}";

/* Refused, or (a flip in deflate's padding bits) the very same bytes. */
static int
never_other(const char *buf, size_t len, const char *want, char *err,
    size_t errlen)
{
	char	*out = NULL;
	size_t	 olen = 0;
	int	 same;

	if (qcrypt_unpack_buf(buf, len, &out, &olen, err, errlen) == -1)
		return out == NULL && err[0] != '\0';
	same = olen == strlen(want) && memcmp(out, want, olen) == 0;
	free(out);
	return same;
}

static int
unpack_fails(const char *buf, size_t len, char *err, size_t errlen)
{
	char	*out = NULL;
	size_t	 olen = 0;

	err[0] = '\0';
	if (qcrypt_unpack_buf(buf, len, &out, &olen, err, errlen) == 0) {
		free(out);
		return 0;
	}
	return out == NULL && err[0] != '\0';
}

static void
test_buf(enum mode m)
{
	char	*packed, *plain, err[256];
	size_t	 plen, len, i;
	int	 all;

	set_mode(m, KEY_A);
	ok(qcrypt_pack_buf(json, strlen(json), &packed, &plen, err,
	    sizeof(err)) == 0 && qcrypt_is_packed(packed, plen),
	    "%s: packs an envelope, with the header", mode_name[m]);
	ok(qcrypt_unpack_buf(packed, plen, &plain, &len, err,
	    sizeof(err)) == 0 && len == strlen(json) &&
	    memcmp(plain, json, len) == 0 && plain[len] == '\0',
	    "%s: round trip, NUL-terminated", mode_name[m]);
	free(plain);
	if (m != M_ZLIB)
		ok(!has(packed, plen, MARKER), "%s: no plaintext in the packed"
		    " form", mode_name[m]);
	for (all = 1, i = 0; i < plen; i++)
		all &= unpack_fails(packed, i, err, sizeof(err));
	ok(all, "%s: every truncation refused (last: %s)", mode_name[m], err);
	for (all = 1, i = 0; i < plen * 8; i++) {
		packed[i / 8] ^= 1 << (i % 8);
		all &= m == M_ZLIB ? never_other(packed, plen, json, err,
		    sizeof(err)) : unpack_fails(packed, plen, err, sizeof(err));
		packed[i / 8] ^= 1 << (i % 8);
	}
	ok(all, "%s: every flipped bit refused%s", mode_name[m], m == M_ZLIB ?
	    " (or lands in unused padding bits)" : "");
	packed = xreallocarray(packed, plen + 1, 1);
	packed[plen] = 'x';
	ok(unpack_fails(packed, plen + 1, err, sizeof(err)),
	    "%s: a byte appended is refused: %s", mode_name[m], err);
	if (m != M_ZLIB) {
		set_mode(m, KEY_B);
		ok(unpack_fails(packed, plen, err, sizeof(err)) &&
		    strstr(err, "another queue key") != NULL,
		    "%s: another key is told apart: %s", mode_name[m], err);
		qcrypt_forget();
		qcrypt_set_compress(1);
		ok(unpack_fails(packed, plen, err, sizeof(err)) &&
		    strstr(err, "encryption is off") != NULL,
		    "%s: no key: refused: %s", mode_name[m], err);
	}
	free(packed);
}

/* Trust: plain is read as is unless encryption is on. */
static void
test_plain(void)
{
	char	*out, *packed, err[256];
	size_t	 len, plen;

	qcrypt_forget();
	qcrypt_set_compress(1);
	ok(qcrypt_unpack_buf(json, strlen(json), &out, &len, err,
	    sizeof(err)) == 0 && len == strlen(json) &&
	    memcmp(out, json, len) == 0,
	    "compression on: a file stored plain is read as is");
	free(out);
	ok(qcrypt_pack_buf(json, strlen(json), &packed, &plen, err,
	    sizeof(err)) == 0, "a compressed file");
	set_mode(M_AES, KEY_A);
	ok(unpack_fails(json, strlen(json), err, sizeof(err)) &&
	    strstr(err, "unencrypted") != NULL,
	    "encryption on: a plain file is refused: %s", err);
	ok(unpack_fails(packed, plen, err, sizeof(err)) &&
	    strstr(err, "unencrypted") != NULL,
	    "encryption on: a compressed-only file is refused");
	qcrypt_forget();
	qcrypt_set_compress(0);
	ok(qcrypt_unpack_buf(packed, plen, &out, &len, err,
	    sizeof(err)) == 0 && len == strlen(json),
	    "both off: a compressed file is still read");
	free(out);
	free(packed);
	ok(qcrypt_is_packed("\x89MSQ", 4) && qcrypt_is_packed("\x88MSQ", 4) &&
	    !qcrypt_is_packed("Received: ", 10) && !qcrypt_is_packed("{", 1) &&
	    !qcrypt_is_packed("", 0), "the magic, and one damaged byte of it");
	ok(qcrypt_set_key("short", 5) == -1, "a key that is not 32 bytes");
}

static int
tmpfd(void)
{
	char	 path[] = "/tmp/test-qcrypt.XXXXXX";
	int	 fd;

	if ((fd = mkstemp(path)) == -1)
		fatal("mkstemp");
	unlink(path);
	return fd;
}

static int
write_buf(int fd, const char *buf, size_t len)
{
	return ftruncate(fd, 0) == 0 && pwrite(fd, buf, len, 0) ==
	    (ssize_t)len ? 0 : -1;
}

static char *
read_fd(int fd, size_t *len)
{
	off_t	 end = lseek(fd, 0, SEEK_END);
	char	*buf = xmalloc(end > 0 ? (size_t)end : 1);

	if (end < 0 || pread(fd, buf, (size_t)end, 0) != end)
		fatal("read back");
	*len = (size_t)end;
	return buf;
}

/* A few MB of mail-like text with some noise: several chunks, real zlib. */
static char *
big_message(size_t *len)
{
	size_t	 n = 3 * 1024 * 1024 + 12345, i;
	char	*m = xmalloc(n);

	for (i = 0; i < n; i++)
		m[i] = (i % 71 == 70) ? '\n' : (i % 977 == 0) ?
		    (char)(msd_random() & 0xff) : "mail text "[i % 10];
	memcpy(m + n / 2, MARKER, strlen(MARKER));
	*len = n;
	return m;
}

static void
test_fd(enum mode m, const char *msg, size_t len)
{
	int	 in = tmpfd(), packed = tmpfd(), out = tmpfd();
	char	*stored, *got = NULL, err[256];
	size_t	 slen, glen;

	set_mode(m, KEY_A);
	if (write_buf(in, msg, len) == -1)
		fatal("write");
	ok(qcrypt_pack_fd(in, packed, err, sizeof(err)) == 0,
	    "%s: packs %zu bytes from a descriptor", mode_name[m], len);
	stored = read_fd(packed, &slen);
	ok(!has(stored, slen, MARKER) && (m == M_AES || slen < len / 2),
	    "%s: stored form: %zu bytes, no plaintext", mode_name[m], slen);
	ok(qcrypt_unpack_fd(packed, out, err, sizeof(err)) == 0 &&
	    (got = read_fd(out, &glen)) != NULL && glen == len &&
	    memcmp(got, msg, len) == 0, "%s: round trip of the big message",
	    mode_name[m]);
	free(got);
	/* Truncated in the middle and at the end; one flipped byte. */
	write_buf(packed, stored, slen / 2);
	ok(ftruncate(out, 0) == 0 && lseek(out, 0, SEEK_SET) == 0 &&
	    qcrypt_unpack_fd(packed, out, err, sizeof(err)) == -1,
	    "%s: truncated to half: %s", mode_name[m], err);
	write_buf(packed, stored, slen - 1);
	ok(qcrypt_unpack_fd(packed, out, err, sizeof(err)) == -1,
	    "%s: last byte missing: %s", mode_name[m], err);
	stored[slen / 3] ^= 0x10;
	write_buf(packed, stored, slen);
	ok(qcrypt_unpack_fd(packed, out, err, sizeof(err)) == -1,
	    "%s: a flipped byte in the middle: %s", mode_name[m], err);
	free(stored);
	close(in);
	close(packed);
	close(out);
}

int
main(void)
{
	char	*msg;
	size_t	 len;
	int	 m;

	log_init(1, 0);
	for (m = 0; m < NMODES; m++)
		test_buf(m);
	test_plain();
	msg = big_message(&len);
	for (m = 0; m < NMODES; m++)
		test_fd(m, msg, len);
	free(msg);
	return tap_done();
}
