// The public header must be usable from C++ (extern "C", no C-only constructs).
#include "backprop.h"

int main() { return bp_status_str(BP_EINVAL)[0] == 'i' ? 0 : 1; }
