/*
 * utf8 — where a string's well-formed UTF-8 characters are.
 *
 * The API's strings may hold any bytes (see jsontext.h); each consumer shows
 * the bytes that are not UTF-8 its own way (names.c as "_", derive.c as
 * \xHH), and they must agree on which bytes those are. Pure; any thread.
 */
#ifndef BATCHFS_UTF8_H
#define BATCHFS_UTF8_H

#include <stddef.h>

/*
 * The length (1 to 4) of the well-formed UTF-8 character at s[0], of at
 * most `avail` (>= 1) bytes, or 0 when s[0] does not start one: a stray
 * continuation byte, a sequence cut short, an overlong form, an encoded
 * UTF-16 surrogate (ED A0 80 ... ED BF BF), a code point above U+10FFFF.
 */
size_t utf8_char_len(const unsigned char *s, size_t avail);

#endif
