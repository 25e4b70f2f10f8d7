/* Intrusive doubly linked lists (the async_state_t of lib/async holds one node). */
#ifndef BELLHOP_LOOP_LIST_H
#define BELLHOP_LOOP_LIST_H

#include <stdbool.h>
#include <stddef.h>
#include <lib/container_of.h>

struct list_node {
    struct list_node *prev, *next;
};

#define LIST_INITIAL_VALUE(l) {&(l), &(l)}
#define list_entry(ptr, type, member) container_of(ptr, type, member)

static inline void list_init(struct list_node *l) { l->prev = l->next = l; }
static inline bool list_is_empty(const struct list_node *l) { return l->next == l; }
/* A node that is initialized and not in any list points at itself. */
static inline bool list_in_list(const struct list_node *n) { return n->next && n->next != n; }

static inline void list_add_between(struct list_node *n, struct list_node *prev,
                                    struct list_node *next) {
    n->prev = prev;
    n->next = next;
    prev->next = n;
    next->prev = n;
}
static inline void list_add_tail(struct list_node *l, struct list_node *n) {
    list_add_between(n, l->prev, l);
}
static inline void list_add_head(struct list_node *l, struct list_node *n) {
    list_add_between(n, l, l->next);
}
static inline void list_add_after(struct list_node *pos, struct list_node *n) {
    list_add_between(n, pos, pos->next);
}
static inline void list_delete(struct list_node *n) {
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = n;
}
static inline struct list_node *list_peek_head(struct list_node *l) {
    return list_is_empty(l) ? NULL : l->next;
}
static inline struct list_node *list_remove_head(struct list_node *l) {
    struct list_node *n = list_peek_head(l);
    if (n) list_delete(n);
    return n;
}

#define list_for_each_safe(l, n, tmp) \
    for ((n) = (l)->next, (tmp) = (n)->next; (n) != (l); (n) = (tmp), (tmp) = (n)->next)

#endif
