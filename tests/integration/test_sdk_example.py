#!/usr/bin/env python3
"""Acceptance (the SDK, as a third party meets it): the build tree is
installed into a staging directory with `make install DESTDIR=...`,
examples/table-json is built there with nothing but its own Makefile and
pkg-config, its json.so goes into the staged module directory, and the
INSTALLED daemon, with only the staged modules on its module path, serves
a domain list and a virtual map from JSON files over SMTP.  A JSON file
with a syntax error makes smtpd -n fail naming the file and line.

make install DESTDIR works the same for an in-tree and an out-of-tree
build: everything lands under DESTDIR/<prefix> (/usr/local unless
configured otherwise): sbin/smtpd, include/modsmtpd/, lib/pkgconfig/
modsmtpd.pc, lib/modsmtpd/modules/<kind>/<name>.so.  The staged
modsmtpd.pc still says prefix=<prefix>, as it must for a package built
from a DESTDIR.  It is rewritten in place to point into the stage rather
than relying on PKG_CONFIG_SYSROOT_DIR: pkgconf (Debian's pkg-config)
puts the sysroot in front of every -I and -L, jansson's system paths
included, and in front of --variable values, which freedesktop
pkg-config leaves alone, so the directory `make install` picks would
depend on the implementation.  The rewritten file is what a real install
gives a module author, with the stage in front of each absolute path
exactly once.
"""

import atexit
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

EXAMPLE = os.path.join(h.ROOT, "examples", "table-json")

CONFIG = """\
listen on @HOST@ port @PORT@ hostname @HOSTNAME@
table domains json:@TMP@/domains.json
table vdomains json:@TMP@/vdomains.json
table virtuals json:@TMP@/virtual.json
action "local" maildir "@MAILDIR@"@USER_OPT@
action "virtual" maildir "@MAILDIR@" virtual <virtuals>@USER_OPT@
match from any for domain <vdomains> action "virtual"
match from any for domain <domains> action "local"
"""

# Mixed case on purpose: the host lowercases keys, the module need not.
DOMAINS = '["Example.ORG", "example.net"]\n'
VDOMAINS = '["virt.example"]\n'
VIRTUAL = """\
{
    "alice@virt.example": "alice@example.org",
    "team@virt.example": ["alice@example.org", "bob@example.net"]
}
"""
# line 3: a member without its ':'
BROKEN = """\
{
    "alice@virt.example": "alice@example.org",
    "team@virt.example" ["alice@example.org"]
}
"""

_stage = {}
_failed = []


def run(cmd, env=None, cwd=None, what=None):
    """Runs cmd; its output, or AssertionError with the output's tail."""
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, env=env, cwd=cwd,
                       timeout=600 * h.SCALE)
    out = p.stdout.decode(errors="replace")
    if p.returncode != 0:
        tail = "\n".join("    | " + l for l in out.splitlines()[-40:])
        raise AssertionError("%s failed (exit %d):\n%s"
                             % (what or " ".join(cmd), p.returncode, tail))
    return out


def clean_env(**extra):
    """The environment for nested makes: nothing of a make that runs us
    (tests/run under `make check`), so DESTDIR and jobs are ours alone."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEFILES",
                        "DESTDIR", "PKG_CONFIG_SYSROOT_DIR")}
    env.update(extra)
    return env


def find(root, suffix):
    """The one path under root ending in suffix (a relative path)."""
    hits = []
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            if p.endswith(os.sep + suffix):
                hits.append(p)
    assert len(hits) == 1, "expected one %s under %s, found %s" % (suffix, root, hits or "none")
    return hits[0]


def relocate_pc(path, stage):
    """Puts stage in front of every absolute variable of a .pc file;
    returns the original value of prefix."""
    with open(path) as f:
        lines = f.read().splitlines()
    prefix = None
    out = []
    for l in lines:
        m = re.match(r"^([A-Za-z_][A-Za-z0-9_.]*)=(/.*)$", l)
        if m:
            if m.group(1) == "prefix":
                prefix = m.group(2)
            l = "%s=%s%s" % (m.group(1), stage, m.group(2))
        out.append(l)
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
    return prefix


def pkg(env, *args):
    return run(["pkg-config"] + list(args), env=env).strip()


def staged():
    """Installs the build tree into a stage once; a dict of the paths."""
    if "error" in _stage:
        raise AssertionError("staging failed earlier: %s" % _stage["error"])
    if _stage:
        return _stage
    try:
        _stage.update(_make_stage())
    except Exception as e:
        _stage.clear()
        _stage["error"] = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise
    return _stage


def _make_stage():
    if not os.path.exists(os.path.join(h.BUILDDIR, "Makefile")):
        raise AssertionError("%s is not a configured build tree (no Makefile)" % h.BUILDDIR)
    stage = tempfile.mkdtemp(prefix="msd-sdk-")
    # The roles open their modules after dropping privileges.
    os.chmod(stage, 0o755)
    atexit.register(lambda: _failed or os.environ.get("MSD_KEEP") == "1"
                    or shutil.rmtree(stage, True))
    print("  staging into %s" % stage)
    run(["make", "-C", h.BUILDDIR, "install", "DESTDIR=" + stage],
        env=clean_env(), what="make install DESTDIR=" + stage)

    pc = find(stage, os.path.join("pkgconfig", "modsmtpd.pc"))
    smtpd = find(stage, os.path.join("sbin", "smtpd"))
    prefix = relocate_pc(pc, stage)
    assert prefix and not prefix.startswith(stage), \
        "the staged modsmtpd.pc has prefix=%r, expected the real prefix" % prefix
    assert smtpd == stage + prefix + "/sbin/smtpd", \
        "smtpd installed at %s, expected under the prefix %s" % (smtpd, prefix)
    env = clean_env(PKG_CONFIG_PATH=os.path.dirname(pc))
    moduledir = pkg(env, "--variable=moduledir", "modsmtpd")
    assert moduledir.startswith(stage + prefix + "/"), \
        "moduledir %s is not under the staged prefix" % moduledir
    return {"stage": stage, "prefix": prefix, "pc": pc, "smtpd": smtpd,
            "env": env, "moduledir": moduledir}


def build_example():
    """Builds and installs json.so from a copy of examples/table-json."""
    s = staged()
    if "json" in s:
        return s
    src = os.path.join(s["stage"], "src", "table-json")
    os.makedirs(os.path.dirname(src))
    # A copy: nothing of the source tree's sdk/ is in reach, and no
    # json.so is left in the checkout.
    shutil.copytree(EXAMPLE, src)
    if os.path.exists(os.path.join(src, "json.so")):
        os.unlink(os.path.join(src, "json.so"))   # someone's build in the checkout
    run(["make", "-C", src, "CFLAGS=-O2 -g -Werror"], env=s["env"],
        what="make in a copy of examples/table-json")
    run(["make", "-C", src, "install"], env=s["env"],
        what="make install in a copy of examples/table-json")
    s["src"] = src
    s["json"] = os.path.join(s["moduledir"], "table", "json.so")
    return s


def daemon(name, s):
    """A Daemon running the staged smtpd with only the staged modules."""
    h.SMTPD = s["smtpd"]        # read by Daemon.start and run_check
    d = h.Daemon(name, CONFIG)
    d.env = lambda: dict(os.environ, MODSMTPD_MODULE_PATH=s["moduledir"])
    for fname, text in (("domains.json", DOMAINS), ("vdomains.json", VDOMAINS),
                        ("virtual.json", VIRTUAL)):
        write(d, fname, text)
    return d


def write(d, name, text):
    """Replaces a file whole, as an admin's editor would (rename)."""
    path = os.path.join(d.tmp, name)
    with open(path + ".new", "w") as f:
        f.write(text)
    os.rename(path + ".new", path)
    return path


def check_config(s, path):
    p = subprocess.run([s["smtpd"], "-n", "-f", path], stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       env=dict(os.environ, MODSMTPD_MODULE_PATH=s["moduledir"]),
                       timeout=30 * h.SCALE)
    return p.returncode, p.stdout.decode(errors="replace")


def recorded(fn):
    """Keeps the stage for a look when a check fails."""
    def wrapper():
        try:
            fn()
        except BaseException:
            _failed.append(fn.__name__)
            raise
    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


# ----------------------------------------------------------------- checks

@recorded
def test_install_layout():
    """make install DESTDIR=: the daemon, the SDK headers, modsmtpd.pc and
    the modules under the configured prefix; the .pc names the real prefix"""
    s = staged()
    root = s["stage"] + s["prefix"]
    for rel in ("sbin/smtpd", "include/modsmtpd/modsmtpd.h",
                "include/modsmtpd/msd_version.h"):
        assert os.path.isfile(os.path.join(root, rel)), "%s not installed under %s" % (rel, root)
    for rel in ("queue/fs.so", "mda/maildir.so", "table/db.so"):
        assert os.path.isfile(os.path.join(s["moduledir"], rel)), \
            "module %s not installed in %s" % (rel, s["moduledir"])
    cflags = pkg(s["env"], "--cflags", "modsmtpd")
    assert "-I" + root + "/include/modsmtpd" in cflags.split(), \
        "pkg-config --cflags modsmtpd gives %r" % cflags
    # Once Makefile.am installs the man page, it must land in man3.
    with open(os.path.join(h.BUILDDIR, "Makefile")) as f:
        if "smtpd-module.3" in f.read():
            find(s["stage"], os.path.join("man3", "smtpd-module.3"))


@recorded
def test_example_builds():
    """examples/table-json builds with only its Makefile and pkg-config,
    exports only its entry point and installs as <moduledir>/table/json.so"""
    s = build_example()
    st = os.stat(s["json"])
    assert st.st_mode & 0o022 == 0, "json.so is writable by group or others: %o" % st.st_mode
    nm = shutil.which("nm")
    if nm:
        out = run([nm, "-D", "--defined-only", s["json"]])
        # what older linkers define in every object is not ours
        exported = [l.split()[-1] for l in out.splitlines() if l.strip()
                    and l.split()[-1] not in ("_init", "_fini", "_edata", "_end",
                                              "__bss_start")]
        assert exported == ["json_LTX_msd_module_entry"], \
            "json.so exports %s, expected only json_LTX_msd_module_entry" % exported
    else:
        print("  note: no nm, exported symbols not checked")


@recorded
def test_json_tables():
    """the installed daemon with the json module: a listed domain gets 250
    and lands in the Maildir, an unlisted one 550; the virtual map's alias
    list expands into two deliveries"""
    s = build_example()
    d = daemon("sdkjson", s)
    rc, out = check_config(s, d.conf)
    assert rc == 0, "smtpd -n on the json configuration failed:\n%s" % out
    d.start()
    log = d.log_text()
    for kind, name in (("table", "json"), ("queue", "fs"), ("mda", "maildir")):
        want = "module %s/%s/%s.so: loaded %s module %s" % (s["moduledir"], kind, name, kind, name)
        assert want in log, "expected %r in the log:\n%s" % (want, d.log_tail(20))
    with d.connect() as c:
        c.greet()
        c.expect("MAIL FROM:<sender@client.test>", 250)
        r = c.cmd("RCPT TO:<rcpt@example.org>")
        assert r.code == 250, "listed domain example.org -> %s" % r
        r = c.cmd("RCPT TO:<someone@EXAMPLE.NET>")
        assert r.code == 250, "listed domain in upper case -> %s" % r
        r = c.cmd("RCPT TO:<nobody@unlisted.example>")
        assert str(r) == "550 Invalid recipient: <nobody@unlisted.example>", \
            "unlisted domain -> %s" % r
        r = c.cmd("RCPT TO:<carol@virt.example>")
        assert r.code == 550, "a virtual domain's unknown user -> %s" % r
        c.expect("RSET", 250)
        data = h.make_message("json listed", "<json.%d@client.test>" % os.getpid())
        c.send_message(data, rcpts=("rcpt@example.org",))
        c.send_message(h.make_message("json team"), rcpts=("team@virt.example",))
        c.expect("QUIT", 221)
    got = d.wait_delivered(3)
    assert len(got) == 3, "%d deliveries, expected 3" % len(got)
    bodies = d.read_messages()
    assert sum(1 for b in bodies if h.split_received(b)[1] == data) == 1, \
        "the listed domain's message is not in the Maildir unchanged"
    for to in ("alice@example.org", "bob@example.net"):
        d.wait_log(r"to=<%s> rcpt=<team@virt\.example>" % re.escape(to))
    d.wait_queue_empty()
    assert d.stop() == 0


@recorded
def test_reload():
    """SIGHUP loads the JSON again: a domain added answers 250; a broken
    file keeps the old contents and the log names file and line"""
    s = build_example()
    d = daemon("sdkreload", s)
    d.start()

    def rcpt(addr):
        with d.connect() as c:
            c.greet()
            c.expect("MAIL FROM:<sender@client.test>", 250)
            return c.cmd("RCPT TO:<%s>" % addr).code

    assert rcpt("x@added.example") == 550
    write(d, "domains.json", '["example.org", "example.net", "added.example"]\n')
    since = d.log_size()
    os.kill(d.pid, signal.SIGHUP)
    d.wait_log(r"lookup: tables updated", since=since)
    assert rcpt("x@added.example") == 250, "added.example after SIGHUP"
    path = write(d, "virtual.json", BROKEN)
    since = d.log_size()
    os.kill(d.pid, signal.SIGHUP)
    d.wait_log(r"table virtuals: %s:3:\d+: .*; the old contents stay" % re.escape(path),
               since=since)
    assert rcpt("alice@virt.example") == 250, "old virtual contents lost"
    assert d.running(), "the daemon exited on a broken table"
    d.stop()


@recorded
def test_syntax_error():
    """smtpd -n with a JSON syntax error fails, naming the file, line and
    column; a top level that is neither array nor object is refused too"""
    s = build_example()
    d = daemon("sdkbad", s)
    path = write(d, "virtual.json", BROKEN)
    rc, out = check_config(s, d.conf)
    assert rc != 0, "smtpd -n accepted a broken JSON table:\n%s" % out
    m = re.search(r"^.*table virtuals: %s:(\d+):(\d+): (.*)$" % re.escape(path), out, re.M)
    assert m, "no 'table virtuals: %s:LINE:COLUMN:' in:\n%s" % (path, out)
    assert m.group(1) == "3", "error on line %s, expected 3: %s" % (m.group(1), m.group(0))
    # the table is declared on line 4 of CONFIG
    assert m.group(0).startswith(d.conf + ":4: "), \
        "the message does not start at the table's line in smtpd.conf: %s" % m.group(0)
    write(d, "virtual.json", '{"alice@virt.example": ["alice@example.org", 7]}\n')
    rc, out = check_config(s, d.conf)
    assert rc != 0 and "element 2 of the value of \"alice@virt.example\" is a number" in out, \
        "a number in an alias list -> exit %d:\n%s" % (rc, out)


if __name__ == "__main__":
    h.run_checks([test_install_layout, test_example_builds, test_json_tables,
                  test_reload, test_syntax_error])
