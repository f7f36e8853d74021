/* makemap.h - the makemap command: builds a hash (Berkeley DB) or cdb map
 * from "key value" lines, as sendmail's makemap does, and writes it beside
 * the old one before renaming it into place. */
#ifndef JM_MAKEMAP_H
#define JM_MAKEMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* Longest input line (without its newline), as sendmail's 1024-byte buffer. */
#define MAKEMAP_LINE_MAX 1022

struct makemap_opts {
    bool include_nul; /* -N: keys and values stored with their NUL */
    bool allow_dups;  /* -d: keep every value of a duplicate key */
    bool allow_empty; /* -e: a key without value is allowed */
    bool keep_case;   /* -f: keys are not folded to lower case */
    bool append;      /* -o: add to the existing map (hash only) */
    bool replace;     /* -r: a duplicate key replaces the earlier value */
    bool unsafe;      /* -s: accept a map that is a symbolic or hard link */
    bool unmake;      /* -u: dump the map */
    bool verbose;     /* -v: print each entry added */
    char comment;     /* -D: comment character, '#' by default */
    char sep;         /* -t: key/value delimiter, '\0' = white space */
};

/* What one input line is. */
enum makemap_line {
    MAKEMAP_SKIP,          /* empty or comment */
    MAKEMAP_ENTRY,         /* key (and value) */
    MAKEMAP_LEADING_SPACE, /* starts with white space (without -t) */
    MAKEMAP_NO_RHS,        /* no value (without -e) */
    MAKEMAP_EMPTY_KEY,     /* -t given and the line starts with it */
    MAKEMAP_NUL_BYTE,      /* a NUL byte in the line */
};

struct makemap_entry {
    char *key; /* NUL-terminated, inside the line */
    size_t keylen;
    char *value; /* NUL-terminated, inside the line; "" with -e */
    size_t valuelen;
};

/* Parses one input line of len bytes (its newline removed; one trailing CR
 * is dropped) in place: line must have room for len + 1 bytes. The key is
 * folded to lower case unless o->keep_case. On MAKEMAP_NO_RHS e->key is set
 * (for the message). Pure: no I/O. */
enum makemap_line makemap_parse_line(const struct makemap_opts *o, char *line, size_t len,
                                     struct makemap_entry *e);

/* Reads one line from in into buf (bufsize > MAKEMAP_LINE_MAX + 1); *len
 * gets its length without the newline. Returns 1 for a line, 0 at the end,
 * -1 on a read error, -2 for a line over MAKEMAP_LINE_MAX (the rest of the
 * line is consumed). */
int makemap_read_line(FILE *in, char *buf, size_t bufsize, size_t *len);

/* Builds (or with o->unmake dumps) map NAME of TYPE ("hash" or "cdb") from
 * in; messages to err, -v and -u output to out. prog prefixes messages.
 * Returns a sysexits code: 0, 64, 65 (data errors, map still made), 73, 74
 * (I/O error: the old map is left untouched). */
int makemap_run(const char *prog, const struct makemap_opts *o, const char *type, const char *name,
                FILE *in, FILE *out, FILE *err);

/* The command: makemap [-N] [-d] [-D c] [-e] [-f] [-l] [-o] [-r] [-s]
 * [-t c] [-u] [-v] TYPE NAME. Returns the exit status. */
int makemap_main(int argc, char **argv);

#endif
