"""A long steady-state run, to wrap a tracer's ring buffer many times.

A request loop: each iteration makes a request line, parses it (a generator
of tokens), routes it through a dispatch table to a handler of a small
class hierarchy, validates fields, formats a response and folds a checksum
of it into a running total.  Every 97th request names an unknown route and
is answered from an exception handler (unwind events).  About 14 Python
calls per request, most with short string arguments and return values, so a
tracer recording arguments and return values stores text with every event.

Nothing is kept from one request to the next except an integer: the
program's own memory is the same after 10 thousand requests or 10 million.
What grows with run length under a tracer is the tracer's own.  A ring
buffer (fntrace's, 1408 KiB per thread by default, 22,528 events of 64
accounted bytes) fills in the first ~1,500 requests and then overwrites.

``run(scale)`` handles ``round(800_000 * scale)`` requests (~11 million
calls, ~1.5 s untraced at scale 1.0 on a 2-core Xeon) and returns the
checksum as hex.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

__all__ = ["REQUESTS", "run"]

REQUESTS = 800_000  # at scale 1.0
MASK = (1 << 61) - 1
METHODS = ("GET", "PUT", "DEL")
KEYS = ("alpha", "beta", "gamma", "delta", "omega")


class NotFound(Exception):
    pass


class Handler:
    verb = "?"

    def __init__(self, store: dict[str, int]) -> None:
        self.store = store

    def validate(self, key: str) -> str:
        if not key.isidentifier():
            raise NotFound(key)
        return key.lower()

    def respond(self, key: str, value: int) -> str:
        return f"{self.verb} {key}={value}"

    def handle(self, key: str, arg: int) -> str:
        key = self.validate(key)
        return self.respond(key, self.apply(key, arg))

    def apply(self, key: str, arg: int) -> int:
        raise NotImplementedError


class Get(Handler):
    verb = "got"

    def apply(self, key: str, arg: int) -> int:
        return self.store.get(key, 0)


class Put(Handler):
    verb = "put"

    def apply(self, key: str, arg: int) -> int:
        self.store[key] = value = (self.store.get(key, 0) + arg) % 10_007
        return value


class Delete(Handler):
    verb = "deleted"

    def apply(self, key: str, arg: int) -> int:
        return self.store.pop(key, -1)


def make_request(i: int) -> str:
    key = KEYS[i % 5] if i % 97 else "no-such-key"
    return f"{METHODS[i % 3]} /{key}/{i % 1000} v1"


def tokens(line: str) -> Iterator[str]:
    for part in line.split(" "):
        yield from part.strip("/").split("/")


def parse(line: str) -> tuple[str, str, int]:
    method, key, arg, _version = tokens(line)
    return method, key, to_int(arg)


def to_int(text: str) -> int:
    return int(text) if text.isdigit() else 0


def checksum(text: str) -> int:
    return sum(text.encode()) * len(text)


def make_routes(store: dict[str, int]) -> dict[str, Callable[[str, int], str]]:
    return {"GET": Get(store).handle, "PUT": Put(store).handle, "DEL": Delete(store).handle}


def serve(routes: dict[str, Callable[[str, int], str]], line: str) -> str:
    method, key, arg = parse(line)
    try:
        return routes[method](key, arg)
    except NotFound as e:
        return f"404 {e}"


def run(scale: float = 1.0) -> str:
    store: dict[str, int] = {}
    routes = make_routes(store)
    total = 0
    for i in range(max(1, round(REQUESTS * scale))):
        total = (total * 31 + checksum(serve(routes, make_request(i)))) & MASK
    return f"{total:x}"
