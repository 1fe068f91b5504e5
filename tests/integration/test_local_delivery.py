#!/usr/bin/env python3
"""Acceptance: local delivery with expansion.  Aliases into a user's mbox
(From_ line, owner, mode), alias |commands and /files, alias chains that
loop, virtual domains with catch-alls routed by other rules, a user's
~/.forward, an mda command fed a recipient full of shell metacharacters,
local submissions on <spool>/submit.sock.

Runs as root only: it delivers as other users.  The test re-executes
itself in a private mount namespace with a tmpfs on /var/mail, so the
machine's mail spool is never touched."""

import os
import pwd
import grp
import shutil
import socket
import stat
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

FWD_USER = "msdfwd"

CONFIG = """\
listen on @HOST@ port @PORT@ hostname @HOSTNAME@
table aliases file:@TMP@/aliases
table virtuals file:@TMP@/virtual
table vdomains { "virt.example", "strict.example" }
action "local" maildir "@MAILDIR@"@USER_OPT@
action "mbox" mbox alias <aliases>
action "virtual" maildir "@TMP@/vmail" virtual <virtuals> user msdtest
action "script" mda "@TMP@/deliver.sh %{rcpt} %{sender}" user msdtest
action "plain" maildir "@TMP@/plain"
action "fail" mda "/bin/sh -c 'echo no such mailbox >&2; exit 67'" user msdtest
match from any for domain "fail.example" action "fail"
mda wrapper "logged" "/bin/sh -c 'echo wrapped >> @TMP@/out/wrapper.log; %{mda}'"
action "wrapped" mda "@TMP@/deliver.sh %{rcpt.user} wrapped" user msdtest wrapper "logged"
match from any for domain "wrap.example" action "wrapped"
table vusers { "carl" = "@UID@:@GID@:@TMP@/vhome/carl" }
action "vuser" maildir "%{user.directory}/Maildir" junk userbase <vusers>
match from any for domain "vuser.example" action "vuser"
action "later" mda "/bin/sh -c 'echo mailbox busy >&2; exit 75'" user msdtest
match from any for domain "later.example" action "later"
match from any for domain <vdomains> action "virtual"
match from any for domain "mda.example" action "script"
match from any for domain "fwd.example" action "plain"
match from any for domain "example.org" action "local"
match from local for local action "mbox"
"""

ALIASES = """\
# aliases(5)
root: msdtest
postmaster: root
pipe: "|/bin/sh -c 'cat > @TMP@/out/piped'"
archive: @TMP@/out/archive.mbox
both: msdtest, external@example.org
"""

VIRTUAL = """\
alice@virt.example msdtest
@virt.example catchall@example.org
bob@strict.example msdtest
"""

SCRIPT = """\
#!/bin/sh
# a procmail-like delivery script: argv and the message into a file
printf '%s\\n' "$@" > "$(dirname "$0")/out/argv"
cat > "$(dirname "$0")/out/script-msg"
exit 0
"""


def mount_namespace():
    """Re-executes the test in a private mount namespace with an empty
    tmpfs on /var/mail (root:mail 2775, as Debian has it)."""
    if os.environ.get("MSD_MNTNS") == "1":
        subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=2775", "tmpfs",
                        "/var/mail"], check=True)
        os.chown("/var/mail", 0, grp.getgrnam("mail").gr_gid)
        return
    os.environ["MSD_MNTNS"] = "1"
    sys.stdout.flush()
    os.execv(shutil.which("unshare"),
             ["unshare", "-m", "--propagation", "private", "--",
              sys.executable, os.path.abspath(sys.argv[0])] + sys.argv[1:])


def local_smtp(d):
    """An SMTP client on the daemon's submission socket."""
    c = h.SMTP.__new__(h.SMTP)
    c.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.sock.settimeout(30 * h.SCALE)
    c.sock.connect(os.path.join(d.spool, "submit.sock"))
    c.buf = b""
    return c


def fwd_user(home):
    """A system user whose home is home (for ~/.forward)."""
    try:
        pwd.getpwnam(FWD_USER)
        subprocess.run(["usermod", "-d", home, FWD_USER], check=True)
    except KeyError:
        subprocess.run(["useradd", "--system", "--user-group", "--home-dir",
                        home, "--shell", "/usr/sbin/nologin", FWD_USER],
                       check=True)
    return pwd.getpwnam(FWD_USER)


def daemon(name="local", extra_aliases=""):
    pw = pwd.getpwnam(h.TEST_USER)
    d = h.Daemon(name, CONFIG.replace("@UID@", str(pw.pw_uid))
                 .replace("@GID@", str(pw.pw_gid)))
    for fname, text in (("aliases", ALIASES + extra_aliases),
                        ("virtual", VIRTUAL)):
        with open(os.path.join(d.tmp, fname), "w") as f:
            f.write(d.subst(text))
    out = os.path.join(d.tmp, "out")
    os.mkdir(out)
    os.chmod(out, 0o1777)      # alias commands and files run as nobody
    script = os.path.join(d.tmp, "deliver.sh")
    with open(script, "w") as f:
        f.write(SCRIPT)
    os.chmod(script, 0o755)
    for sub in ("vmail", "plain", "vhome", "vhome/carl"):
        p = os.path.join(d.tmp, sub)
        os.mkdir(p)
        os.chown(p, pwd.getpwnam(h.TEST_USER).pw_uid, -1)
    return d


def fresh_mbox(user):
    """The user's mbox path, emptied (one tmpfs serves every check)."""
    box = "/var/mail/" + user
    if os.path.exists(box):
        os.unlink(box)
    return box


def read(path):
    with open(path, "rb") as f:
        return f.read()


def test_alias_to_mbox_over_socket():
    """root -> msdtest through aliases, submitted on submit.sock: lands in
    /var/mail/msdtest with a From_ line, owned by msdtest, mode 0600"""
    d = daemon().start()
    box = fresh_mbox(h.TEST_USER)
    msg = h.make_message("to root", body="From the start.\nFromage.\n")
    with local_smtp(d) as c:
        c.expect(None, 220)
        c.expect("EHLO localhost", 250)
        c.send_message(msg, mail_from="cron@localhost", rcpts=("root@localhost",))
    h.wait_for(lambda: os.path.exists(box) and read(box).endswith(b"\n\n"),
               what="delivery into " + box)
    data = read(box)
    st = os.stat(box)
    pw = pwd.getpwnam(h.TEST_USER)
    assert st.st_uid == pw.pw_uid, "mbox owned by uid %d" % st.st_uid
    assert stat.S_IMODE(st.st_mode) == 0o600, "mode %o" % stat.S_IMODE(st.st_mode)
    first = data.split(b"\n", 1)[0]
    assert first.startswith(b"From cron@localhost ") and len(first) == len(
        b"From cron@localhost ") + 24, "From_ line %r" % first
    assert b"\n>From the start.\n" in data and b"\nFromage.\n" in data, data
    d.wait_log(r"mda delivery .* to=<msdtest@localhost> rcpt=<root@localhost>"
               r" user=msdtest .*result=Ok")
    # postmaster -> root -> msdtest: a second message in the same mbox
    with local_smtp(d) as c:
        c.expect(None, 220)
        c.expect("EHLO localhost", 250)
        c.send_message(h.make_message("to postmaster"), mail_from="",
                       rcpts=("postmaster@localhost",))
    h.wait_for(lambda: read(box).count(b"\nFrom MAILER-DAEMON ") == 1,
               what="second message (From MAILER-DAEMON) in " + box)
    # what cron does: echo body | sendmail root
    sendmail = os.path.join(h.BUILDDIR, "sendmail")
    p = subprocess.run([sendmail, "root"], input=b"cron output line\n",
                       env=dict(os.environ, MODSMTPD_SPOOL=d.spool),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    assert p.returncode == 0, "sendmail exit %d: %s" % (p.returncode, p.stdout)
    h.wait_for(lambda: b"\ncron output line\n" in read(box),
               what="the sendmail message in " + box)
    assert b"\nFrom root@" in read(box), read(box)[-400:]
    d.stop()


def test_alias_command_file_and_fanout():
    """|command and /file targets run as nobody; one alias to a user and an
    address delivers both; a socket session is from local"""
    d = daemon("fanout").start()
    with d.connect() as c:
        c.greet()
        c.send_message(h.make_message("fan"), rcpts=("pipe@localhost",
                                                      "archive@localhost",
                                                      "both@localhost"))
    out = os.path.join(d.tmp, "out")
    h.wait_for(lambda: os.path.exists(os.path.join(out, "piped")) and
               b"Subject: fan" in read(os.path.join(out, "piped")),
               what="the alias command's output")
    arch = os.path.join(out, "archive.mbox")
    h.wait_for(lambda: os.path.exists(arch) and read(arch).endswith(b"\n\n"),
               what="the alias file")
    assert read(arch).startswith(b"From sender@client.test "), read(arch)[:80]
    assert os.stat(arch).st_uid == pwd.getpwnam("nobody").pw_uid
    d.wait_delivered(1)       # external@example.org, through the maildir rule
    box = "/var/mail/" + h.TEST_USER
    h.wait_for(lambda: os.path.exists(box) and b"Subject: fan" in read(box),
               what="msdtest's copy of 'both'")
    d.stop()


def test_alias_loop_and_unknown():
    """an alias chain deeper than the limit is refused with 5.4.6; an
    unknown local user and an unknown virtual user get 550"""
    chain = "".join("hop%d: hop%d\n" % (i, i + 1) for i in range(12)) + "hop12: msdtest\n"
    d = daemon("loop", chain).start()
    with d.connect() as c:
        c.greet()
        c.expect("MAIL FROM:<sender@client.test>", 250)
        r = c.cmd("RCPT TO:<hop0@localhost>")
        assert r.code == 550 and "5.4.6" in r.text, r
        r = c.cmd("RCPT TO:<hop5@localhost>")
        assert r.code == 250, "hop5 is only 8 deep: %s" % r
        r = c.cmd("RCPT TO:<nosuchuser@localhost>")
        assert r.code == 550, r
        r = c.cmd("RCPT TO:<carol@strict.example>")
        assert str(r) == "550 Invalid recipient: <carol@strict.example>", r
        c.expect("RCPT TO:<bob@strict.example>", 250)
    d.stop()


def test_virtual_and_catchall():
    """virtual user -> local user's Maildir; catch-all -> an address that
    another rule delivers"""
    d = daemon("virtual").start()
    with d.connect() as c:
        c.greet()
        c.send_message(h.make_message("virt"), rcpts=("alice@virt.example",
                                                       "zed@virt.example"))
    vnew = os.path.join(d.tmp, "vmail", "new")
    h.wait_for(lambda: os.path.isdir(vnew) and len(os.listdir(vnew)) == 1,
               what="alice's copy in vmail/new")
    d.wait_delivered(1)       # catchall@example.org
    d.wait_log(r"mda delivery .* to=<catchall@example.org> rcpt=<zed@virt.example>")
    d.stop()


def test_forward():
    """~/.forward of a user sends the mail to another address and keeps a
    copy with \\user; a group-writable .forward is ignored"""
    d = daemon("forward")
    home = os.path.join(d.tmp, "fwdhome")
    os.mkdir(home)
    pw = fwd_user(home)
    os.chown(home, pw.pw_uid, pw.pw_gid)
    fwd = os.path.join(home, ".forward")
    with open(fwd, "w") as f:
        f.write("# comment\nelsewhere@example.org, \\%s\n" % FWD_USER)
    os.chown(fwd, pw.pw_uid, pw.pw_gid)
    os.chmod(fwd, 0o644)
    d.start()
    with d.connect() as c:
        c.greet()
        c.send_message(h.make_message("fwd"), rcpts=(FWD_USER + "@localhost",))
    d.wait_delivered(1)       # elsewhere@example.org
    box = "/var/mail/" + FWD_USER
    h.wait_for(lambda: os.path.exists(box) and b"Subject: fwd" in read(box),
               what="the \\user copy in " + box)
    assert os.stat(box).st_uid == pw.pw_uid
    os.chmod(fwd, 0o664)
    with d.connect() as c:
        c.greet()
        c.send_message(h.make_message("fwd2"), rcpts=(FWD_USER + "@localhost",))
    h.wait_for(lambda: b"Subject: fwd2" in read(box), what="fwd2 in the mbox")
    d.wait_log(r"forward: .*\.forward ignored: writable by group or others")
    assert len(d.messages()) == 1, "a group-writable .forward was used"
    d.stop()


def test_mda_sanitised_rcpt():
    """mda command with %{rcpt} full of shell metacharacters: the script
    gets them neutralised and nothing is executed"""
    d = daemon("mda").start()
    evil = "x|touch${IFS}pwned`id`&$HOME@mda.example"
    with d.connect() as c:
        c.greet()
        c.send_message(h.make_message("mda body"), rcpts=(evil,))
    out = os.path.join(d.tmp, "out")
    h.wait_for(lambda: os.path.exists(os.path.join(out, "script-msg")),
               what="the script's copy")
    assert b"Subject: mda body" in read(os.path.join(out, "script-msg"))
    argv = read(os.path.join(out, "argv")).decode().splitlines()
    assert argv[1] == "sender@client.test", argv
    for ch in "|`&$":
        assert ch not in argv[0], "metacharacter %r reached the command: %r" % (ch, argv)
    assert argv[0].endswith("@mda.example"), argv
    assert not os.path.exists(os.path.join(d.tmp, "pwned")) and not \
        os.path.exists("/pwned"), "a command from the address ran"
    d.wait_log(r"mda delivery .* user=msdtest .*result=Ok")
    d.stop()


def test_bounce_to_local_sender():
    """a permanent failure bounces: an RFC 3464 report lands in the local
    sender's mbox with the command's error; a failure from <> does not
    bounce"""
    d = daemon("bounce").start()
    box = fresh_mbox(h.TEST_USER)
    with d.connect() as c:
        c.greet()
        c.send_message(h.make_message("doomed", body="original body line\n"),
                       mail_from="root@localhost", rcpts=("who@fail.example",))
    h.wait_for(lambda: os.path.exists(box) and read(box).endswith(b"\n\n"),
               what="the bounce in " + box)
    data = read(box).decode()
    assert data.startswith("From MAILER-DAEMON "), data[:80]
    for want in ("Subject: Delivery status notification: error",
                 "Content-Type: multipart/report",
                 "report-type=delivery-status",
                 "Final-Recipient: rfc822; who@fail.example",
                 "Action: failed",
                 "command exited with status 67: no such mailbox",
                 "Subject: doomed", "original body line"):
        assert want in data, "%r not in the bounce:\n%s" % (want, data)
    d.wait_log(r"queue bounce evpid=\S+ for=\S+ to=<root@localhost>")
    # from <>: logged, no second bounce
    with d.connect() as c:
        c.greet()
        c.send_message(h.make_message("doomed2"), mail_from="",
                       rcpts=("who@fail.example",))
    d.wait_log(r"queue failed envelope from <> to=<who@fail.example>.*not bounced")
    d.wait_queue_empty()
    assert read(box).decode().count("Delivery status notification") == 1
    d.stop()


def test_wrapper_userbase_junk():
    """mda wrapper runs around the action's command; a userbase user gets
    the uid and home from the table; junk files X-Spam: yes into .Junk"""
    d = daemon("wrap").start()
    with d.connect() as c:
        c.greet()
        c.send_message(h.make_message("wrapped body"), rcpts=("dora@wrap.example",))
        c.send_message(h.make_message("ham"), rcpts=("carl@vuser.example",))
        spam = h.make_message("spam", extra_headers=("X-Spam: yes",))
        c.send_message(spam, rcpts=("carl@vuser.example",))
    out = os.path.join(d.tmp, "out")
    h.wait_for(lambda: os.path.exists(os.path.join(out, "script-msg")),
               what="the wrapped command's copy")
    assert read(os.path.join(out, "wrapper.log")) == b"wrapped\n"
    assert read(os.path.join(out, "argv")).decode().splitlines() == ["dora", "wrapped"]
    home = os.path.join(d.tmp, "vhome", "carl", "Maildir")
    h.wait_for(lambda: h.maildir_messages(home) and
               h.maildir_messages(os.path.join(home, ".Junk")),
               what="carl's ham in new/ and spam in .Junk/new")
    assert b"Subject: ham" in read(h.maildir_messages(home)[0])
    assert b"X-Spam: yes" in read(h.maildir_messages(os.path.join(home, ".Junk"))[0])
    st = os.stat(h.maildir_messages(home)[0])
    assert st.st_uid == pwd.getpwnam(h.TEST_USER).pw_uid, "delivered as uid %d" % st.st_uid
    with d.connect() as c:
        c.greet()
        c.expect("MAIL FROM:<sender@client.test>", 250)
        r = c.cmd("RCPT TO:<nobody@vuser.example>")
        assert r.code == 550, "a user missing from the userbase: %s" % r
    d.stop()


def test_mailq():
    """mailq lists an envelope waiting for a retry with its last error, to
    root; another user is refused"""
    d = daemon("mailq").start()
    with d.connect() as c:
        c.greet()
        c.send_message(h.make_message("later"), rcpts=("someone@later.example",))
    d.wait_log(r"result=TempFail stat=command exited with status 75: mailbox busy")
    mailq = os.path.join(h.BUILDDIR, "sendmail")
    env = dict(os.environ, MODSMTPD_SPOOL=d.spool)

    def listing():
        p = subprocess.run([mailq, "-bp"], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=60)
        return p if b"last error" in p.stdout else None
    p = h.wait_for(listing, what="mailq showing the deferred envelope")
    out = p.stdout.decode()
    assert p.returncode == 0, p
    for want in ("waiting, 1 retries", "from <sender@client.test>",
                 "to   <someone@later.example>",
                 "last error: command exited with status 75: mailbox busy",
                 "-- 1 envelope"):
        assert want in out, "%r not in mailq output:\n%s" % (want, out)
    nobody = pwd.getpwnam("nobody")
    p = subprocess.run(["setpriv", "--reuid=%d" % nobody.pw_uid,
                        "--regid=%d" % nobody.pw_gid, "--clear-groups", mailq, "-bp"],
                       env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    assert p.returncode == 77 and b"permission denied" in p.stderr, p
    d.stop()


if __name__ == "__main__":
    if not h.IS_ROOT:
        print("skipped: needs root (deliveries as other users)")
        sys.exit(0)
    mount_namespace()
    h.run_checks([test_alias_to_mbox_over_socket, test_alias_command_file_and_fanout,
                  test_alias_loop_and_unknown, test_virtual_and_catchall,
                  test_forward, test_mda_sanitised_rcpt, test_bounce_to_local_sender,
                  test_wrapper_userbase_junk, test_mailq])
