/* offline.c - mail submitted while smtpd was down (placeholder). */
#include "smtpd.h"

void
offline_enqueue(void)
{
}
