/*
 * table_sqlite.c - the `sqlite` table backend (placeholder until it is written).
 */
#include <stddef.h>

#include "modsmtpd.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION		"unknown"
#endif

static int
stub_open(const struct msd_host *host, const char *name, const char *config,
    void **inst)
{
	(void)name;
	(void)config;
	*inst = NULL;
	host->log(MSD_LOG_ERR, "table backend sqlite is not written yet");
	return MSD_PERMFAIL;
}

static void
stub_close(void *inst)
{
	(void)inst;
}

static const struct msd_table_ops ops = {
	.size = MSD_TABLE_OPS_SIZE,
	.open = stub_open,
	.close = stub_close,
};

static const struct msd_module module = {
	.magic = MSD_MAGIC,
	.abi_major = MSD_ABI_MAJOR,
	.abi_minor = MSD_ABI_TARGET_MINOR,
	.size = MSD_MODULE_SIZE,
	.flags = MSD_MF_BUILD,
	.kind = MSD_KIND_TABLE,
	.name = "sqlite",
	.version = PACKAGE_VERSION,
	.ops = &ops,
	.description = "sqlite tables (placeholder)",
};

MSD_MODULE(sqlite)
{
	(void)host_major;
	(void)host_minor;
	return &module;
}
