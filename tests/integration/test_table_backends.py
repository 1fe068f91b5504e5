#!/usr/bin/env python3
"""Acceptance: one fixture (domains, virtual users with a catch-all,
userinfo for virtual users) served by every table backend gives the same
answers through the daemon: the same RCPT replies and the same delivery
targets.  Backends: file, db (built by our makemap), sqlite, and proc (a
line-protocol table program, tests/table-proc/table-file.py)."""

import os
import re
import sqlite3
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

DOMAINS = ["example.org", "virt.example"]
VIRTUAL = {"alice@virt.example": "vuser", "bob@virt.example": "vuser",
           "@virt.example": "catchall@example.org"}
USERINFO = {"vuser": "@UID@:@GID@:@TMP@/vhome"}

CONFIG = """\
listen on @HOST@ port @PORT@ hostname @HOSTNAME@
table domains @DOMAINS@
table virtuals @VIRTUALS@
table users @USERS@
action "local" maildir "@MAILDIR@"@USER_OPT@
action "virtual" maildir "%{user.directory}/Maildir" virtual <virtuals> userbase <users>
match from any for domain "example.org" action "local"
match from any for domain <domains> action "virtual"
"""

RCPTS = ["alice@virt.example", "Bob@Virt.Example", "zed@virt.example",
         "someone@nowhere.example"]


def ids():
    import pwd
    pw = pwd.getpwnam(h.TEST_USER) if h.IS_ROOT else pwd.getpwuid(os.getuid())
    return pw.pw_uid, pw.pw_gid


def subst_info(d, v):
    uid, gid = ids()
    return v.replace("@UID@", str(uid)).replace("@GID@", str(gid)).replace("@TMP@", d.tmp)


def write_file_tables(d):
    paths = {}
    for name, text in (("domains", "".join(x + "\n" for x in DOMAINS)),
                       ("virtuals", "".join("%s %s\n" % kv for kv in VIRTUAL.items())),
                       ("users", "".join("%s %s\n" % (k, subst_info(d, v))
                                         for k, v in USERINFO.items()))):
        p = os.path.join(d.tmp, name)
        with open(p, "w") as f:
            f.write(text)
        paths[name] = p
    return paths


def file_backend(d):
    p = write_file_tables(d)
    return {k: "file:" + v for k, v in p.items()}


def db_backend(d):
    p = write_file_tables(d)
    makemap = os.path.join(h.BUILDDIR, "makemap")
    out = {}
    for name, path in p.items():
        args = [makemap] + (["-t", "set"] if name == "domains" else []) + [path]
        r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert r.returncode == 0, "makemap %s: %s" % (name, r.stdout)
        out[name] = "db:" + path + ".db"
    return out


def sqlite_backend(d):
    db = os.path.join(d.tmp, "tables.sqlite")
    con = sqlite3.connect(db)
    con.executescript("""
        CREATE TABLE domains (domain TEXT);
        CREATE TABLE virtuals (email TEXT, destination TEXT);
        CREATE TABLE users (name TEXT, uid INTEGER, gid INTEGER, home TEXT);
    """)
    con.executemany("INSERT INTO domains VALUES (?)", [(x,) for x in DOMAINS])
    con.executemany("INSERT INTO virtuals VALUES (?, ?)", list(VIRTUAL.items()))
    for k, v in USERINFO.items():
        uid, gid, home = subst_info(d, v).split(":", 2)
        con.execute("INSERT INTO users VALUES (?, ?, ?, ?)", (k, int(uid), int(gid), home))
    con.commit()
    con.close()
    conf = os.path.join(d.tmp, "sqlite.conf")
    with open(conf, "w") as f:
        f.write("dbpath %s\n"
                "query_domain SELECT domain FROM domains WHERE domain = ?\n"
                "query_alias SELECT destination FROM virtuals WHERE email = ?\n"
                "query_userinfo SELECT uid, gid, home FROM users WHERE name = ?\n" % db)
    os.chmod(d.tmp, 0o755)
    os.chmod(db, 0o644)
    return {k: "sqlite:" + conf for k in ("domains", "virtuals", "users")}


def proc_backend(d):
    """tests/table-proc/table-file.py over each text file, through the
    proc module (an absolute program path)."""
    p = write_file_tables(d)
    prog = os.path.join(h.ROOT, "tests", "table-proc", "table-file.py")
    return {k: "proc:%s:%s" % (prog, v) for k, v in p.items()}


def run_backend(name, make_tables):
    """RCPT codes and delivery targets for one backend."""
    d = h.Daemon("tb-" + name, CONFIG)
    tables = make_tables(d)
    cfg = CONFIG.replace("@DOMAINS@", tables["domains"]) \
        .replace("@VIRTUALS@", tables["virtuals"]).replace("@USERS@", tables["users"])
    d.write_config(cfg)
    vhome = os.path.join(d.tmp, "vhome")
    os.mkdir(vhome)
    if h.IS_ROOT:
        uid, gid = ids()
        os.chown(vhome, uid, gid)
    d.start()
    codes = []
    with d.connect() as c:
        c.greet()
        c.expect("MAIL FROM:<sender@client.test>", 250)
        for r in RCPTS:
            codes.append(c.cmd("RCPT TO:<%s>" % r).code)
        c.expect("DATA", 354)
        c.send(h.to_wire(h.make_message("backends " + name)))
        r = c.reply()
        assert r.code == 250, "DATA with %s: %s" % (name, r)
    d.wait_queue_empty()
    deliveries = sorted(re.findall(r"mda delivery .* to=<([^>]*)> rcpt=<([^>]*)> user=(\S+)",
                                   d.log_text()))
    vnew = h.maildir_messages(os.path.join(vhome, "Maildir"))
    d.stop()
    return codes, deliveries, len(vnew)


def test_same_answers():
    """file, db, sqlite and proc give the same RCPT replies and deliveries
    for one fixture"""
    want_codes = [250, 250, 250, 550]
    results = {}
    for name, fn in (("file", file_backend), ("db", db_backend),
                     ("sqlite", sqlite_backend), ("proc", proc_backend)):
        results[name] = run_backend(name, fn)
        assert results[name][0] == want_codes, "%s: RCPT codes %s" % (name, results[name][0])
        assert results[name][2] == 1, "%s: %d message(s) in the virtual Maildir" % (
            name, results[name][2])
    ref = results["file"]
    assert len(ref[1]) == 2, "file: deliveries %s" % (ref[1],)
    for name, res in results.items():
        assert res == ref, "%s answers differently from file:\n%s\n%s" % (name, res, ref)


if __name__ == "__main__":
    h.run_checks([test_same_answers])
