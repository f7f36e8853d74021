/* err.h - the short reason a library function leaves for its caller. */
#ifndef JM_ERR_H
#define JM_ERR_H

#include <stddef.h>

/* Formats a reason into err (nothing when err is NULL or errlen 0), keeping
 * errno as it was, so that a caller can still look at it. */
void err_set(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
