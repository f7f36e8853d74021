/* conn_limit.h - counting open connections per client address, so that one
 * client cannot take every session slot (max_connections_per_client). */
#ifndef JM_CONN_LIMIT_H
#define JM_CONN_LIMIT_H

#include <stddef.h>
#include <sys/socket.h>

struct conn_table;

/* A table for up to `capacity` addresses at once (its size is fixed, so the
 * memory a flood of clients can claim is bounded). */
struct conn_table *conn_table_new(size_t capacity);
void conn_table_free(struct conn_table *t);

/* Counts one more connection from sa's address; returns the new count, or 0
 * when the table is full. */
unsigned conn_table_add(struct conn_table *t, const struct sockaddr *sa);

/* Counts one connection less. */
void conn_table_remove(struct conn_table *t, const struct sockaddr *sa);

#endif
