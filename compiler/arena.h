/* arena.h: one arena per compilation, freed once. */
#ifndef CNNGEN_ARENA_H
#define CNNGEN_ARENA_H

#include <stddef.h>

typedef struct ArenaBlock ArenaBlock;
typedef struct Arena {
  ArenaBlock *head;
} Arena;

void *arena_alloc(Arena *a, size_t size);            /* zeroed, 16-aligned; aborts on OOM */
char *arena_strndup(Arena *a, const char *s, size_t n);
char *arena_strdup(Arena *a, const char *s);
void arena_free(Arena *a);

#endif
