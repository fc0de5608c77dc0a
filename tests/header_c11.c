/* Compiled with -std=c11 -pedantic -Werror: the public header must stand alone. */
#include "backprop.h"

int main(void) { return bp_status_str(BP_OK)[0] == 'o' ? 0 : 1; }
