/* scheduler.c - next attempt times of queued messages (see scheduler.h).
 *
 * Entries are indexed by queue id in a glibc binary tree (tsearch: balanced,
 * O(log n)) and ordered by (when, qid) in a binary min-heap of pointers. Each
 * entry knows its heap slot, so moving one earlier is a sift-up. */
#include "scheduler.h"

#include <search.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NOT_IN_HEAP ((size_t)-1)

struct sched_entry {
    char qid[QID_SIZE];
    int64_t when;
    size_t heap_pos; /* NOT_IN_HEAP while in flight */
};

struct scheduler {
    void *index; /* tsearch tree of struct sched_entry * by qid */
    struct sched_entry **heap;
    size_t nheap, heap_cap;
    size_t nentries;
};

static int entry_cmp_id(const void *a, const void *b)
{
    return strcmp(((const struct sched_entry *)a)->qid, ((const struct sched_entry *)b)->qid);
}

static bool entry_before(const struct sched_entry *a, const struct sched_entry *b)
{
    if (a->when != b->when)
        return a->when < b->when;
    return strcmp(a->qid, b->qid) < 0;
}

static void heap_set(struct scheduler *s, size_t pos, struct sched_entry *e)
{
    s->heap[pos] = e;
    e->heap_pos = pos;
}

static void sift_up(struct scheduler *s, size_t pos)
{
    struct sched_entry *e = s->heap[pos];
    while (pos > 0) {
        size_t parent = (pos - 1) / 2;
        if (!entry_before(e, s->heap[parent]))
            break;
        heap_set(s, pos, s->heap[parent]);
        pos = parent;
    }
    heap_set(s, pos, e);
}

static void sift_down(struct scheduler *s, size_t pos)
{
    struct sched_entry *e = s->heap[pos];
    for (;;) {
        size_t child = 2 * pos + 1;
        if (child >= s->nheap)
            break;
        if (child + 1 < s->nheap && entry_before(s->heap[child + 1], s->heap[child]))
            child++;
        if (!entry_before(s->heap[child], e))
            break;
        heap_set(s, pos, s->heap[child]);
        pos = child;
    }
    heap_set(s, pos, e);
}

static int heap_push(struct scheduler *s, struct sched_entry *e)
{
    if (s->nheap == s->heap_cap) {
        size_t cap = s->heap_cap ? s->heap_cap * 2 : 64;
        struct sched_entry **h = realloc(s->heap, cap * sizeof *h);
        if (!h)
            return -1;
        s->heap = h;
        s->heap_cap = cap;
    }
    heap_set(s, s->nheap++, e);
    sift_up(s, e->heap_pos);
    return 0;
}

static void heap_remove(struct scheduler *s, struct sched_entry *e)
{
    size_t pos = e->heap_pos;
    struct sched_entry *last = s->heap[--s->nheap];
    e->heap_pos = NOT_IN_HEAP;
    if (pos == s->nheap)
        return;
    heap_set(s, pos, last);
    sift_down(s, pos);
    sift_up(s, last->heap_pos);
}

static struct sched_entry *lookup(const struct scheduler *s, const char *qid)
{
    struct sched_entry key;
    snprintf(key.qid, sizeof key.qid, "%s", qid);
    void *found = tfind(&key, &s->index, entry_cmp_id);
    return found ? *(struct sched_entry **)found : NULL;
}

struct scheduler *sched_new(void)
{
    return calloc(1, sizeof(struct scheduler));
}

void sched_free(struct scheduler *s)
{
    if (!s)
        return;
    tdestroy(s->index, free);
    free(s->heap);
    free(s);
}

static int add_new(struct scheduler *s, const char *qid, int64_t when)
{
    struct sched_entry *e = calloc(1, sizeof *e);
    if (!e)
        return -1;
    memcpy(e->qid, qid, QID_LEN);
    e->when = when;
    void *slot = tsearch(e, &s->index, entry_cmp_id);
    if (!slot) {
        free(e);
        return -1;
    }
    if (heap_push(s, e) < 0) {
        tdelete(e, &s->index, entry_cmp_id);
        free(e);
        return -1;
    }
    s->nentries++;
    return 1;
}

int sched_add(struct scheduler *s, const char *qid, int64_t when)
{
    if (!queue_id_valid(qid, strlen(qid)))
        return -1;
    struct sched_entry *e = lookup(s, qid);
    if (!e)
        return add_new(s, qid, when);
    if (e->heap_pos != NOT_IN_HEAP && when < e->when) {
        e->when = when;
        sift_up(s, e->heap_pos);
    }
    return 0;
}

bool sched_known(const struct scheduler *s, const char *qid)
{
    return queue_id_valid(qid, strlen(qid)) && lookup(s, qid) != NULL;
}

void sched_all_due(struct scheduler *s, int64_t now)
{
    /* Lowering every key to `now` keeps the heap valid only if done in heap
     * order; simpler to lower them all and rebuild (O(n)). */
    for (size_t i = 0; i < s->nheap; i++)
        if (s->heap[i]->when > now)
            s->heap[i]->when = now;
    for (size_t i = s->nheap / 2; i-- > 0;)
        sift_down(s, i);
}

bool sched_take_due(struct scheduler *s, int64_t now, char qid[QID_SIZE])
{
    if (s->nheap == 0 || s->heap[0]->when > now)
        return false;
    struct sched_entry *e = s->heap[0];
    heap_remove(s, e);
    memcpy(qid, e->qid, QID_SIZE);
    return true;
}

bool sched_next_time(const struct scheduler *s, int64_t *when)
{
    if (s->nheap == 0)
        return false;
    *when = s->heap[0]->when;
    return true;
}

void sched_release(struct scheduler *s, const char *qid, int64_t when)
{
    struct sched_entry *e = queue_id_valid(qid, strlen(qid)) ? lookup(s, qid) : NULL;
    if (!e)
        return;
    if (e->heap_pos != NOT_IN_HEAP)
        heap_remove(s, e);
    if (when >= 0) {
        e->when = when;
        if (heap_push(s, e) == 0)
            return;
        /* no memory for the heap: forget it; a later queue scan finds it */
    }
    tdelete(e, &s->index, entry_cmp_id);
    free(e);
    s->nentries--;
}

size_t sched_waiting(const struct scheduler *s)
{
    return s->nheap;
}

size_t sched_in_flight(const struct scheduler *s)
{
    return s->nentries - s->nheap;
}

int64_t sched_backoff(int64_t arrival, int64_t now, unsigned retry_min, unsigned max_delay)
{
    int64_t lo = retry_min ? retry_min : 1;
    int64_t hi = max_delay > lo ? (int64_t)max_delay : lo;
    int64_t age = now > arrival ? now - arrival : 0;
    return age < lo ? lo : age > hi ? hi : age;
}
