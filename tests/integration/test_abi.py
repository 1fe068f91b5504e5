#!/usr/bin/env python3
"""Acceptance (module ABI, as a user meets it): a delivery module built for
ABI major 2 keeps the daemon from starting, with one log line that names
the file and both versions; one built for an older minor of this major
loads and is called."""

import os
import re
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

BUILDDIR = os.environ.get("BUILDDIR") or os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__))))


def host_abi():
    """MAJOR.MINOR of this tree's sdk/msd_version.h."""
    with open(os.path.join(h.ROOT, "sdk", "msd_version.h")) as f:
        text = f.read()
    major = re.search(r"#define MSD_ABI_MAJOR\s+(\d+)", text).group(1)
    minor = re.search(r"#define MSD_ABI_MINOR\s+(\d+)", text).group(1)
    return "%s.%s" % (major, minor)


def module_dir(variant):
    """A module directory holding only the test build of mda/maildir."""
    src = os.path.join(BUILDDIR, "tests", "modules", variant, ".libs", "maildir.so")
    assert os.path.exists(src), "test module %s not built (make check builds it)" % src
    d = tempfile.mkdtemp(prefix="msd-abi-")
    os.chmod(d, 0o755)
    os.mkdir(os.path.join(d, "mda"), 0o755)
    dst = os.path.join(d, "mda", "maildir.so")
    shutil.copy(src, dst)
    os.chmod(dst, 0o755)
    return d, dst


def daemon_with(name, variant):
    d = h.Daemon(name)
    mdir, path = module_dir(variant)
    base_env = d.env
    # Ours first: it shadows the real maildir module; fs still comes from the build.
    d.env = lambda: dict(base_env(), MODSMTPD_MODULE_PATH=mdir + ":" + h.module_path())
    return d, path


def test_major_refused():
    """a module built for ABI 2.0 is refused: startup fails, one line names file and versions"""
    d, path = daemon_with("abi2", "abi2")
    try:
        d.start(timeout=10)
    except AssertionError:
        pass
    else:
        raise AssertionError("smtpd started with an ABI 2.0 module")
    log = d.log_text()
    want = "module %s: built for ABI 2.0, this host is %s" % (path, host_abi())
    assert want in log, "expected %r in the log:\n%s" % (want, d.log_tail(20))
    assert len([l for l in log.splitlines() if "ABI" in l]) == 1, \
        "more than one line about the ABI:\n%s" % d.log_tail(20)


def test_older_minor_loads():
    """a module built for ABI 1.0 loads into the current host and is called for deliveries"""
    d, path = daemon_with("abi0", "oldminor")
    d.start()
    with d.connect() as c:
        c.greet()
        c.send_message(h.make_message("old minor"))
    # The test module answers every delivery with a temporary failure.
    d.wait_log(r"result=TempFail stat=abi test module: no delivery", timeout=30)
    assert re.search(r"loaded mda module maildir abi-test \(ABI 1\.0\)", d.log_text()), \
        "the load of the 1.0 module is not logged:\n%s" % d.log_tail(20)
    assert d.stop() == 0


if __name__ == "__main__":
    h.run_checks([test_major_refused, test_older_minor_loads])
