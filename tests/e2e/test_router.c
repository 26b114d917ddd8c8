/* Router behaviour end to end: being written. */
#include <criterion/criterion.h>
