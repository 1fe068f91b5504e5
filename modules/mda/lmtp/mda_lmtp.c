/*
 * mda_lmtp.c - the `lmtp` delivery method (placeholder until it is written).
 */
#include "modsmtpd.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION		"unknown"
#endif

static int
stub_deliver(const struct msd_host *host, int fd, const msd_envelope *ev,
    msd_result *res)
{
	(void)fd;
	(void)ev;
	host->result_error(res, "lmtp: not implemented");
	return MSD_TEMPFAIL;
}

static const struct msd_mda_ops ops = {
	.size = MSD_MDA_OPS_SIZE,
	.deliver = stub_deliver,
};

static const struct msd_module module = {
	.magic = MSD_MAGIC,
	.abi_major = MSD_ABI_MAJOR,
	.abi_minor = MSD_ABI_TARGET_MINOR,
	.size = MSD_MODULE_SIZE,
	.flags = MSD_MF_BUILD,
	.kind = MSD_KIND_MDA,
	.name = "lmtp",
	.version = PACKAGE_VERSION,
	.ops = &ops,
	.description = "lmtp (placeholder)",
};

MSD_MODULE(lmtp)
{
	(void)host_major;
	(void)host_minor;
	return &module;
}
