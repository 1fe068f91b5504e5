/*
 * abi_test_module.c - an mda module named maildir that exists only to
 * prove the loader's version rules.  Makefile.am builds it three ways:
 *
 *	-DMSD_ABI_TARGET_MINOR=0	an older minor: must load, and the
 *					host must see its 1.1 fields as 0
 *	-DTEST_ABI_MAJOR=2		declares ABI 2.0: must be refused
 *	-DTEST_BAD_MAGIC=1		not our magic: must be refused
 */
#include <stddef.h>
#include <stdint.h>

#include "modsmtpd.h"

#ifdef TEST_ABI_MAJOR
#define DECLARED_MAJOR		TEST_ABI_MAJOR
#define DECLARED_MINOR		0
#else
#define DECLARED_MAJOR		MSD_ABI_MAJOR
#define DECLARED_MINOR		MSD_ABI_TARGET_MINOR
#endif

#ifdef TEST_BAD_MAGIC
#define DECLARED_MAGIC		0x0badcafeU
#else
#define DECLARED_MAGIC		MSD_MAGIC
#endif

static int
test_deliver(const struct msd_host *host, int fd, const msd_envelope *ev,
    msd_result *res)
{
	host->result_error(res, "abi test module: no delivery");
	return MSD_TEMPFAIL;
}

static const struct msd_mda_ops test_ops = {
	.size = MSD_MDA_OPS_SIZE,
	.deliver = test_deliver,
};

static const struct msd_module test_module = {
	.magic = DECLARED_MAGIC,
	.abi_major = DECLARED_MAJOR,
	.abi_minor = DECLARED_MINOR,
	.size = MSD_MODULE_SIZE,
	.flags = MSD_MF_BUILD,
	.kind = MSD_KIND_MDA,
	.name = "maildir",
	.version = "abi-test",
	.ops = &test_ops,
#if MSD_ABI_TARGET_MINOR >= 1
	.description = "ABI test module",
#endif
};

MSD_MODULE(maildir)
{
	return &test_module;
}
