#!/usr/bin/env python3
"""In-process filter modules (issue 6): examples/filter-addheader builds
out of tree against the installed SDK alone (its own Makefile and
pkg-config, as a third party builds it), installs as filter/addheader.so
and is loaded by the installed daemon; and a chain of a builtin filter, a
proc-exec filter and that in-process filter on one listener decides in
chain order: the first filter that rejects gives the reply, data lines go
through the filters in order (each puts a header in front), and the same
filters in the opposite order on a second listener decide the other way
round."""

import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import test_sdk_example as sdk  # noqa: E402

EXAMPLE = os.path.join(h.ROOT, "examples", "filter-addheader")
FILTER = os.path.join(h.ROOT, "examples", "filter-stdio.py")
PYTHON = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable

CONFIG = """\
table firsts { "first@example.org" }
filter "b" phase rcpt-to match rcpt-to <firsts> reject "550 5.7.1 Refused by the builtin filter"
filter "j" phase mail-from match mail-from { "junk@client.test" } junk
filter "stdio" proc-exec "%(python)s %(script)s -r %(rules)s -H 'X-Order: proc'"
filter "ah" module addheader "X-Order: module" refuse "th"
filter "forward" chain { "b", "j", "stdio", "ah" }
filter "backward" chain { "ah", "stdio", "j", "b" }
listen on @HOST@ port @PORT@ hostname @HOSTNAME@ filter "forward"
listen on @HOST@ port %(port2)d hostname @HOSTNAME@ filter "backward"
action "local" maildir "@MAILDIR@"@USER_OPT@
match from any for domain "example.org" action "local"
"""

# stdio refuses first@ and second@: after the builtin filter, before the module
RULES = """[
 {"phase": "rcpt-to", "match": "first@", "decision": "reject", "param": "550 5.7.1 Refused by the proc filter"},
 {"phase": "rcpt-to", "match": "second@", "decision": "reject", "param": "550 5.7.1 Refused by the proc filter"},
 {"phase": "rcpt-to", "match": "third@", "decision": "reject", "param": "550 5.7.1 Refused by the proc filter"}
]"""

MODULE_REPLY = "550 5.7.1 Recipient refused by the addheader filter"
PROC_REPLY = "550 5.7.1 Refused by the proc filter"
BUILTIN_REPLY = "550 5.7.1 Refused by the builtin filter"


def build_example():
    """addheader.so from a copy of examples/filter-addheader, built and
    installed with its own Makefile against the staged SDK."""
    s = sdk.staged()
    if "addheader" in s:
        return s
    src = os.path.join(s["stage"], "src", "filter-addheader")
    os.makedirs(os.path.dirname(src), exist_ok=True)
    shutil.copytree(EXAMPLE, src)
    if os.path.exists(os.path.join(src, "addheader.so")):
        os.unlink(os.path.join(src, "addheader.so"))
    sdk.run(["make", "-C", src, "CFLAGS=-O2 -g -Werror"], env=s["env"],
            what="make in a copy of examples/filter-addheader")
    sdk.run(["make", "-C", src, "install"], env=s["env"],
            what="make install in a copy of examples/filter-addheader")
    s["addheader"] = os.path.join(s["moduledir"], "filter", "addheader.so")
    return s


def test_example_builds():
    """examples/filter-addheader builds with its Makefile and pkg-config
    only, exports only its entry point, installs as filter/addheader.so"""
    s = build_example()
    assert os.path.isfile(s["addheader"]), s["addheader"]
    assert os.stat(s["addheader"]).st_mode & 0o022 == 0
    nm = shutil.which("nm")
    if nm:
        out = sdk.run([nm, "-D", "--defined-only", s["addheader"]])
        exported = [l.split()[-1] for l in out.splitlines() if l.strip()
                    and l.split()[-1] not in ("_init", "_fini", "_edata", "_end",
                                              "__bss_start")]
        assert exported == ["addheader_LTX_msd_module_entry"], exported
    assert os.path.isfile(os.path.join(s["moduledir"], "filter", "builtin.so")), \
        "the builtin filter module is not installed"


def daemon(name, s):
    h.SMTPD = s["smtpd"]
    d = h.Daemon(name, "")
    script = os.path.join(d.tmp, "filter-stdio.py")
    shutil.copy(FILTER, script)
    os.chmod(script, 0o755)
    rules = os.path.join(d.tmp, "rules.json")
    with open(rules, "w") as f:
        f.write(RULES)
    os.chmod(rules, 0o644)
    d.port2 = h.free_port()
    d.write_config(CONFIG % {"python": PYTHON, "script": script, "rules": rules,
                             "port2": d.port2})
    d.env = lambda: dict(os.environ, MODSMTPD_MODULE_PATH=s["moduledir"])
    return d


def rcpt_replies(d, port):
    out = {}
    with h.SMTP(d.host, port) as c:
        c.greet()
        c.expect("MAIL FROM:<sender@client.test>", 250)
        for who in ("first", "second", "third", "fourth"):
            out[who] = str(c.cmd("RCPT TO:<%s@example.org>" % who))
    return out


def test_chain_order():
    """builtin + proc-exec + in-process in one chain: the first refusal in
    chain order wins, data lines pass the filters in chain order"""
    s = build_example()
    d = daemon("fmchain", s)
    rc = subprocess.run([s["smtpd"], "-n", "-f", d.conf], env=d.env(),
                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert rc.returncode == 0, rc.stdout.decode(errors="replace")
    d.start()
    assert "loaded filter module addheader 1.0 (ABI 1.4)" in d.log_text(), d.log_tail(20)

    got = rcpt_replies(d, d.port)
    assert got["first"] == BUILTIN_REPLY, got
    assert got["second"] == PROC_REPLY, got
    assert got["third"] == PROC_REPLY, got
    assert got["fourth"].startswith("250"), got
    got = rcpt_replies(d, d.port2)
    assert got["first"] == PROC_REPLY, got
    assert got["second"] == PROC_REPLY, got
    # refused from a timer: the module answers asynchronously
    assert got["third"] == MODULE_REPLY, got
    assert got["fourth"].startswith("250"), got

    for port, subject in ((d.port, "forward"), (d.port2, "backward")):
        with h.SMTP(d.host, port) as c:
            c.greet()
            c.send_message(h.make_message(subject), mail_from="junk@client.test")
    d.wait_delivered(2)
    msgs = {m.split(b"Subject: ")[1].split(b"\n")[0].decode(): m for m in d.read_messages()}
    # builtin junk, then proc, then module: each in front of what it got
    assert msgs["forward"].startswith(
        b"X-Order: module\nX-Order: proc\nX-Spam: Yes\nReceived: "), msgs["forward"][:120]
    # module, then proc, then the junk decision, which marks the transaction
    assert msgs["backward"].startswith(
        b"X-Order: proc\nX-Order: module\nX-Spam: Yes\nReceived: "), msgs["backward"][:120]
    assert d.stop() == 0


if __name__ == "__main__":
    h.run_checks([test_example_builds, test_chain_order])
