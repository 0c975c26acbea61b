"""The LZ4 block format's decompressor in Python, for readers without the C extension.

A recording made with the C extension stores its event chunks as LZ4 blocks
(docs/tracefile.md, compression flag 2; the compressor is
fntrace/csrc/lzblock.c).  A reader without the extension (Pyodide, a build
without a compiler, ``FNTRACE_PURE=1``) reads them here, about as fast as
Python copies bytes.  It checks what the C decompressor checks, in the same
order, and says the same thing: whatever the bytes are, the result is either
the exact ``size`` bytes or a ValueError with one short line.

The format, from its description: sequences, each a token byte (high four
bits: literal count, low four: match length - 4; a field of 15 continues in
the next bytes, each added until one is below 255), the literals, then a
two-byte little-endian offset back into the output and the match, copied
from there (it may overlap what it writes: a repeating pattern).  The last
sequence is literals only and ends the block.
"""

from __future__ import annotations

__all__ = ["decompress"]

_CUT_SHORT = "the block is cut short"
_LITERALS_PAST = "a literal run goes past the declared size"
_MATCH_PAST = "a match goes past the declared size"
_OFFSET_ZERO = "a match offset is 0"
_BEFORE_START = "a match reaches before the start"
_ENDS_EARLY = "the block ends before the declared size"


def _more_length(data: bytes, n: int, ip: int, length: int, room: int,
                 past: str) -> tuple[int, int]:
    """A length field of 15's count bytes, added: (length, next position)."""
    while True:
        if ip >= n:
            raise ValueError(_CUT_SHORT)
        b = data[ip]
        ip += 1
        length += b
        if length > room:
            raise ValueError(past)
        if b != 255:
            return length, ip


def decompress(data: bytes, size: int) -> bytes:
    """The ``size`` bytes the LZ4 block ``data`` holds; ValueError (why) when it is
    not a block of exactly that many.  A size no block of ``len(data)`` bytes
    can reach (more than 255 per byte) is refused before anything is built."""
    n = len(data)
    if size < 0 or size > n * 255:
        raise ValueError(f"a block of {n} bytes cannot hold {size}")
    out = bytearray()
    ip = 0
    while True:
        if ip >= n:
            raise ValueError(_CUT_SHORT)
        token = data[ip]
        ip += 1
        room = size - len(out)
        lit = token >> 4
        if lit == 15:
            lit, ip = _more_length(data, n, ip, lit, room, _LITERALS_PAST)
        if lit > room:
            raise ValueError(_LITERALS_PAST)
        if lit > n - ip:
            raise ValueError(_CUT_SHORT)
        out += data[ip:ip + lit]
        ip += lit
        if ip == n:  # the last sequence: literals only
            if len(out) != size:
                raise ValueError(_ENDS_EARLY)
            return bytes(out)
        if n - ip < 2:
            raise ValueError(_CUT_SHORT)
        offset = data[ip] | data[ip + 1] << 8
        ip += 2
        if offset == 0:
            raise ValueError(_OFFSET_ZERO)
        done = len(out)
        if offset > done:
            raise ValueError(_BEFORE_START)
        room = size - done
        length = (token & 15) + 4
        if length == 19:
            length, ip = _more_length(data, n, ip, length, room, _MATCH_PAST)
        if length > room:
            raise ValueError(_MATCH_PAST)
        start = done - offset
        if offset >= length:
            out += out[start:start + length]
        else:  # overlapping: the last `offset` bytes repeated
            whole, part = divmod(length, offset)
            pattern = out[start:]
            out += pattern * whole + pattern[:part]
