/* conn_limit.c - per-address connection counts in an open-addressing hash
 * table with linear probing and tombstone-free deletion (backward shift). */
#include "conn_limit.h"

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct slot {
    uint8_t key[16]; /* IPv4 as ::ffff:a.b.c.d, so both families share a key space */
    unsigned count;  /* 0: empty */
};

struct conn_table {
    struct slot *slots;
    size_t size; /* a power of two, at least twice the capacity */
    size_t used;
    size_t capacity;
};

struct conn_table *conn_table_new(size_t capacity)
{
    struct conn_table *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->size = 16;
    while (t->size < capacity * 2)
        t->size *= 2;
    t->capacity = capacity;
    t->slots = calloc(t->size, sizeof *t->slots);
    if (!t->slots) {
        free(t);
        return NULL;
    }
    return t;
}

void conn_table_free(struct conn_table *t)
{
    if (t)
        free(t->slots);
    free(t);
}

static void make_key(const struct sockaddr *sa, uint8_t key[16])
{
    memset(key, 0, 16);
    if (sa->sa_family == AF_INET6) {
        memcpy(key, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
    } else if (sa->sa_family == AF_INET) {
        key[10] = key[11] = 0xff;
        memcpy(key + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    }
}

/* FNV-1a: a keyed hash is not needed because the table never grows and a
 * collision only costs probes within a bounded table. */
static size_t hash_key(const uint8_t key[16], size_t size)
{
    uint32_t h = 2166136261u;
    for (int i = 0; i < 16; i++)
        h = (h ^ key[i]) * 16777619u;
    return h & (size - 1);
}

static size_t find(const struct conn_table *t, const uint8_t key[16])
{
    size_t i = hash_key(key, t->size);
    while (t->slots[i].count && memcmp(t->slots[i].key, key, 16) != 0)
        i = (i + 1) & (t->size - 1);
    return i;
}

unsigned conn_table_add(struct conn_table *t, const struct sockaddr *sa)
{
    uint8_t key[16];
    make_key(sa, key);
    size_t i = find(t, key);
    if (!t->slots[i].count) {
        if (t->used >= t->capacity)
            return 0;
        memcpy(t->slots[i].key, key, 16);
        t->used++;
    }
    return ++t->slots[i].count;
}

/* Removing by shifting later entries of the same probe run back keeps every
 * remaining key reachable without tombstones. */
static void delete_slot(struct conn_table *t, size_t hole)
{
    size_t mask = t->size - 1, j = hole;
    t->slots[hole].count = 0;
    for (;;) {
        j = (j + 1) & mask;
        if (!t->slots[j].count)
            return;
        size_t home = hash_key(t->slots[j].key, t->size);
        /* j's entry may move into the hole unless its home lies in (hole, j]. */
        bool stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
        if (stays)
            continue;
        t->slots[hole] = t->slots[j];
        t->slots[j].count = 0;
        hole = j;
    }
}

void conn_table_remove(struct conn_table *t, const struct sockaddr *sa)
{
    uint8_t key[16];
    make_key(sa, key);
    size_t i = find(t, key);
    if (!t->slots[i].count)
        return;
    if (--t->slots[i].count == 0) {
        t->used--;
        delete_slot(t, i);
    }
}
