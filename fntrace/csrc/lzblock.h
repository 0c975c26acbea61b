/* lzblock.h: the LZ4 block format's compressor and decompressor (lzblock.c).
 *
 * Why: a recording spends more on zlib level 1 than on tracing (about 1,400
 * instructions per function_graph call for ~17 bytes of events).  An LZ4 block
 * costs a fifth of that for a fifth more bytes, and the format is simple
 * enough to write here, so fntrace's core keeps no dependency.  The trace
 * file stores the decompressed size beside the block (docs/tracefile.md,
 * flag 2); fntrace/formats/lzblock.py is the pure-Python decompressor for
 * readers without this extension.
 */
#ifndef FNT_LZBLOCK_H
#define FNT_LZBLOCK_H

#include "fnt.h"

#ifdef FNT_HOT_PATH

/* The most a block of n input bytes can take (every byte a literal, plus the
 * length bytes and the token). */
#define FNT_LZ_BOUND(n) ((n) + (n) / 255 + 16)

/* The largest input the compressor takes: positions are 32-bit. */
#define FNT_LZ_MAX_INPUT 0x7E000000

/* Compress n bytes of src into dst (FNT_LZ_BOUND(n) bytes); returns the
 * block's size.  Touches no Python object: callable without the GIL. */
FNT_HIDDEN size_t fnt_lz_compress(const uint8_t *src, size_t n, uint8_t *dst);

/* An event chunk's stored payload of n bytes compressed: the LZ4 flag, n as a
 * LEB128 number and the block (docs/tracefile.md), as a new bytes object
 * (NULL with an exception).  src must be private memory: the GIL is let go
 * while a large input is compressed. */
FNT_HIDDEN PyObject *fnt_lz_stored(const uint8_t *src, size_t n);

/* Decompress the block src[0:n] into exactly cap bytes of dst; 0 when it
 * fills dst exactly, else -1 with *why saying what is wrong.  Reads and
 * writes nothing outside src[0:n] and dst[0:cap], whatever src holds. */
FNT_HIDDEN int fnt_lz_decompress(const uint8_t *src, size_t n, uint8_t *dst, size_t cap,
                                 const char **why);

/* The module's functions: lz_compress(data) and lz_decompress(data, size). */
FNT_HIDDEN PyObject *fnt_lz_compress_fn(PyObject *module, PyObject *arg);
FNT_HIDDEN PyObject *fnt_lz_decompress_fn(PyObject *module, PyObject *args);

#endif  /* FNT_HOT_PATH */
#endif  /* FNT_LZBLOCK_H */
