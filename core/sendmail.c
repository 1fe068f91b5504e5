/* sendmail.c - the local enqueuer (placeholder until it is written). */
#include <stdio.h>

int
main(void)
{
	fprintf(stderr, "sendmail: not implemented\n");
	return 75;
}
