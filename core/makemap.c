/* makemap.c - builds db tables (placeholder until it is written). */
#include <stdio.h>

int
main(void)
{
	fprintf(stderr, "makemap: not implemented\n");
	return 1;
}
