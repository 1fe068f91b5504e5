#!/usr/bin/env python3
"""Interoperability (makemap): maps built by OpenSMTPD's makemap are dumped
by ours exactly as by OpenSMTPD's own -U, and maps built by ours are dumped
by OpenSMTPD's -U exactly as by ours; both refuse the same broken sources,
naming the same line.

OpenSMTPD's makemap comes from the Debian package opensmtpd, fetched with
`apt-get download` and unpacked with `dpkg -x`, never installed (it would
bring another MTA).  The .deb is kept in /var/cache/modsmtpd-test so later
runs need no network; the download happens before the test moves into its
network namespace.  Debian installs makemap as a link to smtpctl, which runs
only with the group "opensmtpq" as its effective group: the test runs it
with that group (and creates the group if it is missing), which needs root.

OpenSMTPD's makemap 6.8 reads some lines differently (a '#' anywhere starts
a comment, a trailing backslash joins lines, "[ipv6]" keys are not special):
the sources here avoid those, and list entries are dumped as "key<TAB><set>"
by it and as "key" by ours, which the comparisons allow for.
"""

import atexit
import glob
import grp
import os
import pwd
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

MAKEMAP = os.path.join(h.BUILDDIR, "makemap")
CACHE = "/var/cache/modsmtpd-test"
PACKAGE = "opensmtpd"
QUEUE_GROUP = "opensmtpq"
FETCH_ERROR = "MSD_OPENSMTPD_FETCH_ERROR"
# Libraries Debian's smtpctl links, and the packages that ship them.
LIB_PACKAGES = {
    "libevent-2.1.so.7": "libevent-2.1-7",
    "libcrypto.so.3": "libssl3",
    "libssl.so.3": "libssl3",
    "libdb-5.3.so": "libdb5.3",
    "libz.so.1": "zlib1g",
    "libcrypt.so.1": "libcrypt1",
    "libresolv.so.2": "libc6",
}

MAP_TEXT = """\
# a mapping both parsers read alike
root: admin, bob
Postmaster: root
abuse\troot
relay-label   smtp+tls://mx.example.org:587
creds: user:secret password
Dom1.Example.ORG a value with  spaces, and commas
"""

SET_TEXT = """\
example.org
Example.NET
*.example.com
192.0.2.0/24
"""

ALIASES_TEXT = """\
root: bob, alice@example.org
staff: /var/mail/archive, |/usr/bin/procmail -a x, :include:/etc/mail/staff
gone: error:550 5.1.1 no such user
"""


# ------------------------------------------------------------ the package

def cached_deb():
    debs = sorted(glob.glob(os.path.join(CACHE, PACKAGE + "_*.deb")))
    return debs[-1] if debs else None


def fetch():
    """Puts the .deb in CACHE unless it is there; returns an error text or
    None.  Runs before the network namespace, which has no network."""
    if cached_deb():
        return None
    try:
        os.makedirs(CACHE, 0o755, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix="download-", dir=CACHE)
    except OSError as e:
        return "cannot create the cache %s: %s" % (CACHE, e)
    try:
        os.chmod(tmp, 0o755)
        try:
            # apt downloads as _apt where it can, and warns where it cannot
            os.chown(tmp, pwd.getpwnam("_apt").pw_uid, -1)
        except (KeyError, OSError):
            pass
        p = subprocess.run(["apt-get", "download", PACKAGE], cwd=tmp,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=120 * h.SCALE)
        debs = glob.glob(os.path.join(tmp, PACKAGE + "_*.deb"))
        if p.returncode != 0 or len(debs) != 1:
            return ("`apt-get download %s` failed (exit %d; no network, or the "
                    "package lists are missing or stale: apt-get update):\n%s"
                    % (PACKAGE, p.returncode, p.stdout.decode(errors="replace").strip()))
        os.rename(debs[0], os.path.join(CACHE, os.path.basename(debs[0])))
        return None
    except (OSError, subprocess.TimeoutExpired) as e:
        return "`apt-get download %s` failed: %s" % (PACKAGE, e)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


_theirs = []
_failed = []


def theirs():
    """Path of OpenSMTPD's makemap, unpacked once per run."""
    if _theirs:
        return _theirs[0]
    if _failed:
        raise AssertionError("no OpenSMTPD makemap (see the first failure)")
    _failed.append(True)
    err = os.environ.get(FETCH_ERROR)
    deb = cached_deb()
    if err or not deb:
        raise AssertionError("no %s package to test against: %s"
                             % (PACKAGE, err or "nothing in %s" % CACHE))
    root = tempfile.mkdtemp(prefix="msd-opensmtpd-")
    atexit.register(shutil.rmtree, root, True)
    p = subprocess.run(["dpkg", "-x", deb, root], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT)
    binary = os.path.join(root, "usr", "sbin", "makemap")
    if p.returncode != 0 or not os.path.exists(binary):
        raise AssertionError("dpkg -x %s gave no usr/sbin/makemap: %s"
                             % (deb, p.stdout.decode(errors="replace")))
    check_libraries(os.path.join(root, "usr", "sbin", "smtpctl"))
    _failed.clear()
    _theirs.append(binary)
    return binary


def check_libraries(binary):
    p = subprocess.run(["ldd", binary], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = p.stdout.decode(errors="replace")
    missing = [l.split()[0] for l in out.splitlines() if "not found" in l]
    if p.returncode != 0 or missing:
        pkgs = sorted({LIB_PACKAGES.get(m, "?") for m in missing})
        raise AssertionError(
            "OpenSMTPD's smtpctl cannot run: missing %s; install the Debian "
            "package(s) %s (scripts/check should)\n%s"
            % (", ".join(missing) or "?", ", ".join(pkgs), out))


def queue_gid():
    try:
        return grp.getgrnam(QUEUE_GROUP).gr_gid
    except KeyError:
        subprocess.run(["groupadd", "--system", QUEUE_GROUP], check=True)
        return grp.getgrnam(QUEUE_GROUP).gr_gid


# -------------------------------------------------------------- running

def run(argv, cwd, stdin=None, group=None):
    kw = {"group": group} if group is not None else {}
    return subprocess.run(argv, cwd=cwd, stdin=stdin or subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=60 * h.SCALE, **kw)


def ours(*args, cwd, stdin=None):
    if not os.path.exists(MAKEMAP):
        raise AssertionError("no makemap at %s (build it first)" % MAKEMAP)
    return run([MAKEMAP] + list(args), cwd, stdin)


def opensmtpd(*args, cwd, stdin=None):
    return run([theirs()] + list(args), cwd, stdin, group=queue_gid())


def ok(p, what):
    if p.returncode != 0:
        raise AssertionError("%s: exit %d, stderr %r" % (what, p.returncode, p.stderr))
    return p.stdout.decode()


def workdir(name):
    d = tempfile.mkdtemp(prefix="msd-makemap-%s-" % name)
    atexit.register(shutil.rmtree, d, True)
    return d


def write(d, name, text):
    with open(os.path.join(d, name), "w") as f:
        f.write(text)
    return name


def lines(text, set_suffix=False):
    """Sorted dump lines; set_suffix drops OpenSMTPD's "\\t<set>"."""
    out = text.splitlines()
    if set_suffix:
        out = [l[:-len("\t<set>")] if l.endswith("\t<set>") else l for l in out]
    return sorted(out)


def expected(text, kind=None):
    """What a dump of text must show, from the rules both programs share."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if kind == "set":
            out.append(line.lower())
            continue
        i = min([line.find(c) for c in " \t:" if c in line])
        key, value = line[:i], line[i + 1:].lstrip(" \t")
        out.append("%s\t%s" % (key.lower(), value))
    return sorted(out)


def big_text(n=3000):
    """Enough records for many hash pages and overflow chains."""
    return "".join("key%05d value-%d-%s\n" % (i, i, "x" * (i % 200)) for i in range(n))


# ---------------------------------------------------------------- checks

def test_package():
    """OpenSMTPD's makemap is at hand: fetched (or cached), unpacked, runnable"""
    d = workdir("pkg")
    write(d, "m", "a b\n")
    ok(opensmtpd("m", cwd=d), "OpenSMTPD makemap m")
    out = ok(opensmtpd("-U", "m.db", cwd=d), "OpenSMTPD makemap -U m.db")
    assert out == "a\tb\n", "OpenSMTPD's own round trip gave %r" % out


def their_map_our_dump(name, text, kind=None):
    d = workdir(name)
    src = write(d, name, text)
    opts = ["-t", kind] if kind else []
    ok(opensmtpd(*(opts + [src]), cwd=d), "OpenSMTPD makemap %s" % " ".join(opts + [src]))
    mine = ok(ours("-U", src + ".db", cwd=d), "our makemap -U")
    theirs_out = ok(opensmtpd("-U", src + ".db", cwd=d), "OpenSMTPD makemap -U")
    if kind == "set":
        assert lines(mine) == lines(theirs_out, set_suffix=True) == expected(text, kind), \
            "dumps differ:\nours   %r\ntheirs %r" % (mine, theirs_out)
        assert all(l.endswith("\t<set>") for l in theirs_out.splitlines()), theirs_out
    else:
        # The same file walked the same way: byte for byte, order included.
        assert mine == theirs_out, "dumps differ:\nours   %r\ntheirs %r" % (mine, theirs_out)
        if text is not BIG:
            assert lines(mine) == expected(text), \
                "dump %r, expected %r" % (lines(mine), expected(text))


BIG = big_text()


def test_their_map():
    """a mapping built by OpenSMTPD's makemap: our -U prints exactly what its -U prints"""
    their_map_our_dump("map", MAP_TEXT)


def test_their_set():
    """a -t set list built by OpenSMTPD's makemap: our -U prints its keys"""
    their_map_our_dump("set", SET_TEXT, "set")


def test_their_aliases():
    """a -t aliases map built by OpenSMTPD's makemap: our -U prints exactly what its -U prints"""
    their_map_our_dump("aliases", ALIASES_TEXT, "aliases")


def test_their_big_map():
    """3000 records built by OpenSMTPD's makemap: both dumps identical"""
    their_map_our_dump("big", BIG)


def our_map_their_dump(name, text, kind=None, sendmail_form=False):
    d = workdir(name)
    src = write(d, name, text)
    if sendmail_form:
        with open(os.path.join(d, src)) as f:
            p = ours("hash", src, cwd=d, stdin=f)
    else:
        p = ours(*((["-t", kind] if kind else []) + [src]), cwd=d)
    assert p.returncode == 0 and p.stdout == b"" and p.stderr == b"", \
        "our makemap: exit %d, %r %r" % (p.returncode, p.stdout, p.stderr)
    theirs_out = ok(opensmtpd("-U", src + ".db", cwd=d), "OpenSMTPD makemap -U")
    mine = ok(ours("-U", src + ".db", cwd=d), "our makemap -U")
    if kind == "set":
        assert lines(theirs_out, set_suffix=True) == lines(mine) == expected(text, kind), \
            "dumps differ:\ntheirs %r\nours   %r" % (theirs_out, mine)
        assert all(l.endswith("\t<set>") for l in theirs_out.splitlines()), \
            "OpenSMTPD does not see <set> values: %r" % theirs_out
    else:
        assert theirs_out == mine, "dumps differ:\ntheirs %r\nours   %r" % (theirs_out, mine)
        if text is not BIG:
            assert lines(mine) == expected(text), \
                "dump %r, expected %r" % (lines(mine), expected(text))


def test_our_map():
    """a mapping built by our makemap: OpenSMTPD's -U prints exactly what ours prints"""
    our_map_their_dump("map", MAP_TEXT)


def test_our_set():
    """a -t set list built by our makemap: OpenSMTPD's -U sees every key with <set>"""
    our_map_their_dump("set", SET_TEXT, "set")


def test_our_aliases():
    """a -t aliases map built by our makemap: OpenSMTPD's -U prints exactly what ours prints"""
    our_map_their_dump("aliases", ALIASES_TEXT, "aliases")


def test_our_big_map():
    """3000 records built by our makemap: both dumps identical"""
    our_map_their_dump("big", BIG)


def test_our_sendmail_form():
    """makemap hash NAME < file (ours): OpenSMTPD reads NAME.db"""
    our_map_their_dump("stdin", MAP_TEXT, sendmail_form=True)


def test_same_refusals():
    """broken sources: both exit 1 naming the same line, and the old map stays"""
    cases = [("dup", "a 1\nb 2\nA 3\n", [], "dup:3:"),
             ("novalue", "a 1\nlonely\n", [], "novalue:2:"),
             ("badalias", "a: bob\nb: bob, , carol\n", ["-t", "aliases"], "badalias:2:")]
    for name, text, opts, where in cases:
        for label, prog in (("ours", ours), ("OpenSMTPD's", opensmtpd)):
            d = workdir(name)
            write(d, name, "old value\n")
            ok(prog(*(opts + [name]), cwd=d), "%s makemap of a good %s" % (label, name))
            with open(os.path.join(d, name + ".db"), "rb") as f:
                before = f.read()
            write(d, name, text)
            p = prog(*(opts + [name]), cwd=d)
            err = p.stderr.decode(errors="replace")
            assert p.returncode == 1 and where in err, \
                "%s makemap %s: exit %d, stderr %r (wanted %r)" % (
                    label, " ".join(opts + [name]), p.returncode, err, where)
            with open(os.path.join(d, name + ".db"), "rb") as f:
                assert f.read() == before, "%s makemap changed the old %s.db" % (label, name)
            left = [f for f in os.listdir(d) if f.startswith(name + ".db.")]
            assert not left, "%s makemap left %r behind" % (label, left)


CHECKS = [test_package, test_their_map, test_their_set, test_their_aliases,
          test_their_big_map, test_our_map, test_our_set, test_our_aliases,
          test_our_big_map, test_our_sendmail_form, test_same_refusals]

if __name__ == "__main__":
    if not h.IS_ROOT:
        print("skipped: OpenSMTPD's makemap runs only with the group %s, "
              "which needs root" % QUEUE_GROUP)
        sys.exit(0)
    if not h.in_netns() and FETCH_ERROR not in os.environ:
        error = fetch()
        if error:
            os.environ[FETCH_ERROR] = error
    h.run_checks(CHECKS)
