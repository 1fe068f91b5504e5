/*
 * modsmtpd module ABI version.
 *
 * A module built against major M, minor m loads into a host of major M and
 * minor >= m.  Structs only grow at their end; every published struct
 * starts with (or carries) its size, and the host never reads past the size
 * a module declared.  Adding a member, an op, an enum value or a service bit
 * is a minor bump; removing, reordering or retyping anything is a major bump.
 *
 * History (one line per bump):
 *   1.0  2026-11-22  first ABI: descriptor, host services, table/queue/mda/
 *                    filter kinds, queue and mda ops.
 *   1.1  2026-11-22  msd_module.description; msd_host.query for named
 *                    extension interfaces; msd_queue_ops.flush (group commit);
 *                    envelope field MSD_ENV_CREATION.
 *   1.2  2026-11-22  envelope field MSD_ENV_MDA_RCPT (the LMTP RCPT TO).
 *   1.3  2026-11-22  table backends: msd_table_ops, MSD_TS_* services.
 *   1.4  2026-11-23  filters: msd_filter_ops, MSD_FE_/MSD_FP_/MSD_FV_*,
 *                    msd_host.filter_* and table_match, MSD_PENDING.
 */
#ifndef MSD_VERSION_H
#define MSD_VERSION_H

#define MSD_ABI_MAJOR	1
#define MSD_ABI_MINOR	4

/*
 * A module may be compiled for an older minor by defining MSD_ABI_TARGET_MINOR
 * before including modsmtpd.h; it then declares the older sizes and never
 * uses newer members.
 */
#ifndef MSD_ABI_TARGET_MINOR
#define MSD_ABI_TARGET_MINOR	MSD_ABI_MINOR
#endif
#if MSD_ABI_TARGET_MINOR < 0 || MSD_ABI_TARGET_MINOR > MSD_ABI_MINOR
#error "MSD_ABI_TARGET_MINOR must be a minor this header knows"
#endif

#endif
