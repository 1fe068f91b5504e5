#!/usr/bin/env python3
"""`queue compression` and `queue encryption` (OpenSMTPD's lines, unchanged).

A message answered 250 is stored transformed (no spool file holds the
body's marker), is listed by `smtpctl show queue`, survives a restart and
is delivered byte for byte, with the key in the configuration or on
standard input, a few MB as well as a few lines.  A file the daemon cannot
decode (another key, a flipped byte) is logged with its id and stays in
the queue; a restart with the right key or file delivers it.  A bounce of
an encrypted message carries the original.  Files say how they are
stored: turning compression on or off with mail queued loses nothing.
The key reaches no log, no `smtpd -n -v` and no other role's memory.

Deliveries are held back by a file where the Maildir should be (every
attempt fails temporarily); the next start, with the file gone, retries
at once."""

import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

KEY_A = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"     # what openssl rand -hex 16 prints
KEY_B = "aaaabbbbccccddddeeeeffff00001111"
MAGIC = b"\x89MSQ"
SMTPCTL = os.path.join(h.BUILDDIR, "smtpctl")

BOUNCE_CONFIG = """\
listen on @HOST@ port @PORT@ hostname @HOSTNAME@
action "local" maildir "@MAILDIR@"@USER_OPT@
action "fail" mda "/bin/sh -c 'echo no such mailbox >&2; exit 67'"@USER_OPT@
match from any for domain "fail.test" action "fail"
match from any for domain "example.org" action "local"
match from local for local action "local"
"""


def marker(tag):
    return "queue-crypt-marker-%s-%d" % (tag, os.getpid())


def daemon(name, extra, config=None):
    return h.Daemon(name, config=config, extra=extra + "\n")


def block(d):
    """A file where the Maildir should be: deliveries fail temporarily."""
    with open(d.maildir, "w") as f:
        f.write("not a maildir\n")


def unblock(d):
    os.remove(d.maildir)


def spool_files(d):
    """Every file the queue module keeps (messages and envelopes)."""
    out = []
    for sub in ("message", "envelope"):
        for dirpath, _dirs, files in os.walk(os.path.join(d.spool, sub)):
            out.extend(os.path.join(dirpath, f) for f in files)
    return sorted(out)


def message_file(d, msgid):
    return os.path.join(d.spool, "message", msgid)


def send(d, data, rcpt="rcpt@example.org", sender="sender@client.test"):
    with d.connect() as c:
        c.greet()
        return c.send_message(data, mail_from=sender, rcpts=(rcpt,))


def queue_held(d, msgid):
    """Accepted and its first delivery failed: it is in the queue."""
    d.wait_log(r"%s[0-9a-f]{8} mda delivery .* result=TempFail" % msgid, timeout=30)


def assert_stored_transformed(d, msgid, mark):
    files = spool_files(d)
    assert message_file(d, msgid) in files, "message %s not in the spool: %s" % (msgid, files)
    assert any("/envelope/" in f for f in files), "no envelope in the spool: %s" % files
    for f in files:
        data = h._read(f)
        assert mark.encode() not in data, "%s holds the plaintext marker" % f
        assert data.startswith(MAGIC), "%s is not stored transformed: %r" % (f, data[:40])


def show_queue(d):
    p = subprocess.run([SMTPCTL, "show", "queue"], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, env=dict(os.environ, MODSMTPD_SPOOL=d.spool),
                       timeout=30 * h.SCALE)
    out = p.stdout.decode(errors="replace")
    assert p.returncode == 0, "smtpctl show queue exited %d: %s" % (p.returncode, out)
    return out


def delivered_once(d, data, msgid):
    d.wait_delivered(1, 60)
    d.wait_queue_empty(60)
    got = d.read_messages()
    assert len(got) == 1, "%d messages delivered, expected 1" % len(got)
    received, rest = h.split_received(got[0])
    assert rest == data, "delivered bytes differ from what was sent (%d vs %d bytes)" % (
        len(rest), len(data))
    assert (" id %s" % msgid).encode() in received, "Received lacks id %s: %r" % (msgid, received)


def round_trip(name, extra, data, mark, stdin=None):
    """Accept with deliveries held, check the spool and smtpctl, stop,
    start again with deliveries possible: delivered as sent."""
    d = daemon(name, extra)
    block(d)
    d.start(stdin=stdin)
    msgid = send(d, data)
    queue_held(d, msgid)
    assert_stored_transformed(d, msgid, mark)
    assert msgid in show_queue(d), "smtpctl show queue does not list %s" % msgid
    assert d.stop() == 0
    unblock(d)
    d.start(stdin=stdin)
    delivered_once(d, data, msgid)
    assert d.stop() == 0
    return d


def test_compression():
    """queue compression: stored compressed, restart, delivered byte-identical"""
    mark = marker("zlib")
    data = h.make_message("compressed", body=("%s\n" % mark) + "line of text\n" * 200)
    d = round_trip("qzlib", "queue compression", data, mark)
    text = d.log_text()
    assert "queue: queue compression enabled" in text, "no line says compression is on"


def test_encryption_key_in_config():
    """queue encryption KEY: stored encrypted, restart, delivered; the key in no log"""
    mark = marker("aes")
    data = h.make_message("encrypted", body="%s\nsecret body\n" % mark)
    d = round_trip("qaes", "queue encryption %s" % KEY_A, data, mark)
    text = d.log_text()
    assert "queue: queue encryption enabled" in text, "no line says encryption is on"
    assert KEY_A not in text, "the key is in the log"


def test_encryption_key_stdin():
    """queue encryption stdin (and -): the key read from standard input at start"""
    for n, word in enumerate(("stdin", "-")):
        mark = marker("stdin%d" % n)
        data = h.make_message("key on stdin", body="%s\n" % mark)
        d = round_trip("qstdin%d" % n, "queue encryption %s" % word, data, mark,
                       stdin=(KEY_A + "\n").encode())
        assert KEY_A not in d.log_text(), "the key is in the log"


def test_both_big_message():
    """compression and encryption, a 4 MB message: stored small and sealed, delivered intact"""
    mark = marker("big")
    lines = ["%06d %s the quick brown fox jumps over the lazy dog\n" % (i, "x" * (i % 37))
             for i in range(60000)]
    body = mark + "\n" + "".join(lines)
    data = h.make_message("big", body=body)
    assert len(data) > 4 * 1000 * 1000
    d = daemon("qbig", "queue compression\nqueue encryption key %s" % KEY_A)
    block(d)
    d.start()
    msgid = send(d, data)
    queue_held(d, msgid)
    assert_stored_transformed(d, msgid, mark)
    size = os.path.getsize(message_file(d, msgid))
    assert size < len(data) / 2, "%d bytes stored for %d: not compressed" % (size, len(data))
    assert d.stop() == 0
    unblock(d)
    d.start()
    delivered_once(d, data, msgid)
    assert d.stop() == 0


def test_many_messages():
    """one message after another, sizes up and down: each delivered as sent
    (the queue reuses its plaintext files)"""
    d = daemon("qmany", "queue compression\nqueue encryption %s" % KEY_A)
    d.start()
    sent = {}
    for i, size in enumerate((3000, 40, 70000, 10, 500000, 200)):
        body = "".join("message %d line %d\n" % (i, k) for k in range(size // 20 + 1))
        data = h.make_message("n%d" % i, body=body)
        sent[send(d, data)] = data
    d.wait_delivered(len(sent), 60)
    d.wait_queue_empty(60)
    for got in d.read_messages():
        received, rest = h.split_received(got)
        mid = re.search(rb" id ([0-9a-f]{8})", received).group(1).decode()
        assert rest == sent.pop(mid), "message %s delivered altered (%d bytes)" % (mid, len(rest))
    assert not sent, "not delivered: %s" % list(sent)
    assert d.stop() == 0


def test_wrong_key_keeps_message():
    """another key: the envelope cannot be read, logged, kept; the right key delivers it"""
    mark = marker("wrong")
    data = h.make_message("wrong key", body="%s\n" % mark)
    d = daemon("qwrong", "queue encryption %s" % KEY_A)
    block(d)
    d.start()
    msgid = send(d, data)
    queue_held(d, msgid)
    before = spool_files(d)
    assert d.stop() == 0

    unblock(d)
    d.write_config(h.DEFAULT_CONFIG + "queue encryption %s\n" % KEY_B)
    since = d.log_size()
    d.start()
    d.wait_log(r"queue: envelope %s[0-9a-f]{8} of message %s cannot be read: encrypted with "
               r"another queue key; left in the queue" % (msgid, msgid), since=since)
    out = show_queue(d)
    assert msgid not in out, "smtpctl lists an envelope it cannot read: %s" % out
    assert d.running(), "the daemon died on an unreadable envelope"
    assert spool_files(d) == before, "the spool changed under the wrong key"
    assert not d.messages(), "something was delivered with the wrong key"
    assert d.stop() == 0
    assert spool_files(d) == before, "the spool changed under the wrong key"

    d.write_config(h.DEFAULT_CONFIG + "queue encryption %s\n" % KEY_A)
    d.start()
    delivered_once(d, data, msgid)
    assert d.stop() == 0


def test_corrupt_message_kept():
    """a flipped byte in an encrypted message: not delivered, logged, kept; repaired: delivered"""
    mark = marker("flip")
    data = h.make_message("flipped", body="%s\n" % mark)
    d = daemon("qflip", "queue compression\nqueue encryption %s" % KEY_A)
    block(d)
    d.start()
    msgid = send(d, data)
    queue_held(d, msgid)
    assert d.stop() == 0
    path = message_file(d, msgid)
    good = h._read(path)
    bad = bytearray(good)
    bad[len(bad) // 2] ^= 0x40
    with open(path, "wb") as f:
        f.write(bytes(bad))

    unblock(d)
    since = d.log_size()
    d.start()
    d.wait_log(r"queue: message %s cannot be read: authentication failed: the file is corrupt "
               r"or truncated; it stays in the queue" % msgid, since=since)
    d.wait_log(r"cannot open message %s, retrying" % msgid, since=since)
    assert msgid in show_queue(d), "the envelope of the unreadable message left the queue"
    assert not d.messages(), "garbage was delivered"
    assert h._read(path) == bytes(bad), "the unreadable message file was changed"
    assert d.stop() == 0
    assert os.path.exists(path) and d.envelopes(), "the unreadable message was removed"

    with open(path, "wb") as f:
        f.write(good)
    d.start()
    delivered_once(d, data, msgid)
    assert d.stop() == 0


def test_bounce_of_encrypted_message():
    """a permanent failure of an encrypted message bounces with the original inside"""
    mark = marker("bounce")
    data = h.make_message("to bounce", frm="snd@example.org", to="nobody@fail.test",
                          body="%s\n" % mark)
    d = daemon("qbounce", "queue encryption %s" % KEY_A, config=BOUNCE_CONFIG)
    d.start()
    msgid = send(d, data, rcpt="nobody@fail.test", sender="snd@example.org")
    d.wait_delivered(1, 60)
    d.wait_queue_empty(60)
    got = d.read_messages()
    assert len(got) == 1, "%d messages in the sender's Maildir" % len(got)
    notice = got[0]
    assert b"no such mailbox" in notice, "the bounce lacks the error: %r" % notice[:300]
    assert mark.encode() in notice, "the bounce does not carry the original message"
    assert d.stop() == 0


def test_settings_change_with_mail_queued():
    """files say how they are stored: compression on, then off, then on with mail
    queued delivers everything; plain files are refused under encryption, kept"""
    d = daemon("qswitch", "")
    block(d)
    d.start()
    plain_data = h.make_message("queued plain", body="%s\n" % marker("plain"))
    plain_id = send(d, plain_data)
    queue_held(d, plain_id)
    assert h._read(message_file(d, plain_id)).startswith(b"Received:"), \
        "without the options the message is not stored as is"
    assert d.stop() == 0

    d.write_config(h.DEFAULT_CONFIG + "queue compression\n")
    d.start()
    zlib_data = h.make_message("queued compressed", body="%s\n" % marker("zlib2"))
    zlib_id = send(d, zlib_data)
    queue_held(d, zlib_id)
    assert h._read(message_file(d, zlib_id)).startswith(MAGIC)
    assert d.stop() == 0

    # Encryption trusts only encrypted files: both stay, with a reason each.
    d.write_config(h.DEFAULT_CONFIG + "queue encryption %s\n" % KEY_A)
    since = d.log_size()
    d.start()
    for mid in (plain_id, zlib_id):
        d.wait_log(r"queue: envelope %s[0-9a-f]{8} of message %s cannot be read: stored "
                   r"unencrypted, but queue encryption is on" % (mid, mid), since=since)
    assert d.stop() == 0

    unblock(d)
    d.write_config(h.DEFAULT_CONFIG)
    d.start()
    d.wait_delivered(2, 60)
    d.wait_queue_empty(60)
    got = sorted(h.split_received(m)[1] for m in d.read_messages())
    assert got == sorted([plain_data, zlib_data]), "delivered bytes differ"
    assert d.stop() == 0


def test_key_errors():
    """no key and no terminal, an empty stdin, a short key: precise errors, no start"""
    cases = [
        ("queue encryption", None,
         r"smtpd\.conf:\d+: queue encryption has no key and there is no terminal to ask for it"),
        ("queue encryption stdin", b"",
         r"smtpd\.conf:\d+: queue encryption stdin: no key on standard input"),
        ("queue encryption -", b"0123456789\n",
         r"smtpd\.conf:\d+: queue encryption key: expected 32 characters .* got 10"),
        ("queue encryption 0123", None,
         r"smtpd\.conf:\d+: queue encryption key: expected 32 characters .* got 4"),
    ]
    for n, (line, stdin, want) in enumerate(cases):
        d = daemon("qkeyerr%d" % n, line)
        try:
            d.start(timeout=10, stdin=stdin)
        except AssertionError:
            pass
        else:
            raise AssertionError("smtpd started with %r" % line)
        assert d.wait_exit(10) != 0
        assert re.search(want, d.log_text()), "expected /%s/ in:\n%s" % (want, d.log_tail(10))


def test_check_hides_key():
    """smtpd -n -v never prints the key; what it prints refuses to start"""
    d = daemon("qcheck", "")
    rc, out, _path = d.check(h.DEFAULT_CONFIG + "queue encryption %s\n" % KEY_A)
    assert rc == 0, "smtpd -n refused a valid key: %s" % out
    path = os.path.join(d.tmp, "check-v.conf")
    with open(path, "w") as f:
        f.write(d.subst(h.DEFAULT_CONFIG + "queue encryption %s\n" % KEY_A))
    rc, out = h.run_check(path, ["-v"])
    assert rc == 0 and KEY_A not in out, "smtpd -n -v shows the key:\n%s" % out
    assert 'queue encryption "(key not shown)"' in out, "no placeholder in:\n%s" % out
    printed = "\n".join(l for l in out.splitlines() if not l.startswith("configuration OK"))
    rc, out, _path = d.check(printed + "\n")
    assert rc != 0 and "put the real key back" in out, \
        "the printed placeholder was taken for a key: %s" % out


def memory_holds(pid, needle):
    """Whether any readable mapping of pid contains needle (read in pieces;
    the giant reservations of a sanitizer build are skipped)."""
    step = 1 << 20
    with open("/proc/%d/maps" % pid) as maps, open("/proc/%d/mem" % pid, "rb", 0) as mem:
        for line in maps:
            f = line.split()
            if "r" not in f[1] or (len(f) > 5 and f[5].startswith("[v")):
                continue
            lo, hi = (int(x, 16) for x in f[0].split("-"))
            if hi - lo > (1 << 30):
                continue
            tail = b""
            for off in range(lo, hi, step):
                try:
                    mem.seek(off)
                    chunk = mem.read(min(step, hi - off))
                except (OSError, ValueError, OverflowError):
                    break
                if needle in tail + chunk:
                    return True
                tail = chunk[-len(needle):]
    return False


def test_key_only_in_queue_role():
    """after start only the queue role holds the key: not smtp, lookup, control, parent"""
    if not h.IS_ROOT:
        print("skip: reading other processes' memory needs root")
        return
    # A file big enough to be read in several steps, the key quoted.
    filler = "".join("# filler comment line %04d, to grow the file\n" % i for i in range(400))
    d = daemon("qmem", '%squeue encryption "%s"' % (filler, KEY_A))
    d.start()
    with d.connect() as c:
        c.greet()
        c.send_message(h.make_message("warm up"))
    d.wait_delivered(1)
    roles = d.role_pids()
    key = KEY_A.encode()
    # Half the key too: free(3) reuses the start of a freed copy, not the rest.
    assert memory_holds(roles["queue"], key), "the key is not found in the queue role " \
        "(the scan does not work)"
    for role in ("smtp", "lookup", "control"):
        assert not memory_holds(roles[role], key[16:]), "the %s role holds the key" % role
    assert not memory_holds(d.pid, key[16:]), "the parent holds the key"
    for pid in roles.values():
        assert key[16:] not in h._read("/proc/%d/environ" % pid), \
            "a role has the key in its environment"
    assert d.stop() == 0


if __name__ == "__main__":
    h.run_checks([test_compression, test_encryption_key_in_config, test_encryption_key_stdin,
                  test_both_big_message, test_many_messages, test_wrong_key_keeps_message, test_corrupt_message_kept,
                  test_bounce_of_encrypted_message, test_settings_change_with_mail_queued,
                  test_key_errors, test_check_hides_key, test_key_only_in_queue_role])
