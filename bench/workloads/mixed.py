"""A mixed standard-library program: what a tracer meets in ordinary code.

Each round of the program (all of it deterministic, ``random.Random(seed)``):

* builds orders as frozen, ordered data classes (``dataclasses``), serialises
  them with ``json.dumps(default=...)`` and reads them back with
  ``json.loads(object_hook=...)`` (C code calling back into Python);
* writes and parses a log with ``re`` (compiled patterns, ``finditer``,
  ``groupdict``, ``re.sub`` with a replacement function);
* sorts and groups with key functions (``sorted(key=lambda ...)``,
  ``operator.attrgetter``, ``functools.cmp_to_key``, ``itertools.groupby``),
  ``dataclasses.replace`` and ``asdict``;
* runs a small class-heavy market simulation: an inheritance hierarchy of
  agents with properties and methods, an event queue on ``heapq`` ordered by
  ``__lt__``, a ledger with ``__hash__``/``__eq__`` keys.

Its share of time in C (json, re, sorting) and in tiny Python methods is what
ordinary programs have; the Python call rate is ~5x lower than in
``callheavy``.  ``run(scale)`` runs ``round(56 * scale)`` rounds (~1.4 s
untraced at scale 1.0) and returns a SHA-256 digest of everything produced,
so a traced run can be checked against an untraced one.  Below half a round
(scale < 1/112, the slow peers' *small* scale) it runs one round with its
sizes (orders, agents) scaled down in proportion.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import heapq
import itertools
import json
import operator
import random
import re
from collections.abc import Iterator
from typing import Any

__all__ = ["ROUNDS", "run"]

ROUNDS = 56  # at scale 1.0


# -- data classes and JSON ---------------------------------------------------------


@dataclasses.dataclass(frozen=True, order=True)
class LineItem:
    sku: str
    quantity: int
    unit_cents: int

    @property
    def total(self) -> int:
        return self.quantity * self.unit_cents


@dataclasses.dataclass(frozen=True, order=True)
class Order:
    order_id: int
    customer: str
    region: str
    items: tuple[LineItem, ...] = ()
    priority: int = 0

    @property
    def total(self) -> int:
        return sum(item.total for item in self.items)


REGIONS = ("north", "south", "east", "west", "centre")
NAMES = ("ada", "bob", "cyd", "dee", "eve", "fay", "gus", "hal", "ivy", "jon", "kai", "lea")


def make_orders(rng: random.Random, n: int) -> list[Order]:
    orders = []
    for i in range(n):
        items = tuple(LineItem(f"SKU-{rng.randrange(500):04d}", rng.randint(1, 9),
                               rng.randrange(50, 20_000)) for _ in range(rng.randint(1, 6)))
        orders.append(Order(i, rng.choice(NAMES) + str(rng.randrange(40)), rng.choice(REGIONS),
                            items, rng.randrange(4)))
    return orders


def _encode(obj: Any) -> Any:
    if isinstance(obj, Order):
        return {"kind": "order", "id": obj.order_id, "customer": obj.customer,
                "region": obj.region, "items": list(obj.items), "priority": obj.priority}
    if isinstance(obj, LineItem):
        return {"kind": "item", "sku": obj.sku, "q": obj.quantity, "c": obj.unit_cents}
    raise TypeError(type(obj).__name__)


def _decode(d: dict[str, Any]) -> Any:
    kind = d.get("kind")
    if kind == "item":
        return LineItem(d["sku"], d["q"], d["c"])
    if kind == "order":
        return Order(d["id"], d["customer"], d["region"], tuple(d["items"]), d["priority"])
    return d


def json_round_trip(orders: list[Order]) -> tuple[list[Order], str]:
    text = json.dumps({"orders": orders}, default=_encode, sort_keys=True)
    back = json.loads(text, object_hook=_decode)["orders"]
    return back, text


# -- regular expressions -----------------------------------------------------------

LOG_LINE = re.compile(
    r"(?P<ts>\d{2}:\d{2}:\d{2}) (?P<level>INFO|WARN|ERROR) \[(?P<who>[a-z]+\d*)\] "
    r"(?P<verb>bought|returned|viewed) (?P<n>\d+) x (?P<sku>SKU-\d{4})(?: for (?P<cents>\d+)c)?")
SKU = re.compile(r"SKU-(\d{4})")


def make_log(rng: random.Random, orders: list[Order]) -> str:
    lines = []
    for k, order in enumerate(orders):
        for item in order.items:
            level = ("INFO", "WARN", "ERROR")[rng.randrange(3)]
            verb = ("bought", "returned", "viewed")[rng.randrange(3)]
            tail = f" for {item.total}c" if verb != "viewed" else ""
            lines.append(f"{k // 3600 % 24:02d}:{k // 60 % 60:02d}:{k % 60:02d} {level} "
                         f"[{order.customer}] {verb} {item.quantity} x {item.sku}{tail}")
    return "\n".join(lines)


def _bump_sku(m: re.Match[str]) -> str:
    return f"SKU-{(int(m.group(1)) * 7 + 3) % 10_000:04d}"


def parse_log(text: str) -> dict[str, int]:
    per_verb: dict[str, int] = {}
    for m in LOG_LINE.finditer(text):
        fields = m.groupdict()
        key = f"{fields['level']}:{fields['verb']}"
        per_verb[key] = per_verb.get(key, 0) + int(fields["n"]) * int(fields["cents"] or 1)
    per_verb["rewritten"] = len(SKU.sub(_bump_sku, text))
    return per_verb


# -- sorting and grouping with key functions -----------------------------------------


def _by_priority_then_total(a: Order, b: Order) -> int:
    if a.priority != b.priority:
        return b.priority - a.priority
    return (a.total > b.total) - (a.total < b.total)


def rank(orders: list[Order]) -> list[Any]:
    out: list[Any] = []
    by_total = sorted(orders, key=lambda o: (o.total, o.order_id))
    out.append([o.order_id for o in by_total[:5]])
    by_region = sorted(orders, key=operator.attrgetter("region", "customer", "order_id"))
    for region, group in itertools.groupby(by_region, key=operator.attrgetter("region")):
        members = list(group)
        out.append((region, len(members), max(o.total for o in members)))
    urgent = sorted(orders, key=functools.cmp_to_key(_by_priority_then_total))
    out.append([o.order_id for o in urgent[:5]])
    bumped = [dataclasses.replace(o, priority=(o.priority + 1) % 4) for o in orders[::7]]
    out.append(sorted(bumped)[:2] == sorted(bumped, key=lambda o: dataclasses.astuple(o))[:2])
    out.append(sum(len(dataclasses.asdict(o)["items"]) for o in orders[::11]))
    return out


# -- a small class-heavy simulation -----------------------------------------------------


class Account:
    __slots__ = ("balance", "history", "owner")

    def __init__(self, owner: str, balance: int) -> None:
        self.owner = owner
        self.balance = balance
        self.history: list[int] = []

    def deposit(self, cents: int) -> None:
        self.balance += cents
        self.history.append(cents)

    def withdraw(self, cents: int) -> bool:
        if cents > self.balance:
            return False
        self.balance -= cents
        self.history.append(-cents)
        return True


class Agent:
    kind = "agent"

    def __init__(self, name: str, account: Account, rng: random.Random) -> None:
        self.name = name
        self.account = account
        self.rng = rng
        self.trades = 0

    @property
    def wealth(self) -> int:
        return self.account.balance

    def price_for(self, good: Good) -> int:
        return good.price

    def wants(self, good: Good) -> bool:
        return self.rng.random() < 0.5

    def act(self, market: Market, now: int) -> Iterator[Event]:
        good = market.pick(self.rng)
        if self.wants(good) and self.account.withdraw(self.price_for(good)):
            good.sold(self)
            self.trades += 1
            yield Event(now + self.rng.randrange(1, 5), "delivery", self, good)
        yield Event(now + self.rng.randrange(2, 9), "wake", self, None)


class Bargainer(Agent):
    kind = "bargainer"

    def price_for(self, good: Good) -> int:
        return max(1, super().price_for(good) * 9 // 10)

    def wants(self, good: Good) -> bool:
        return good.price < 700 and super().wants(good)


class Collector(Agent):
    kind = "collector"

    def wants(self, good: Good) -> bool:
        return good.sku.endswith(("7", "3")) or self.rng.random() < 0.2


class Good:
    __slots__ = ("price", "sku", "stock")

    def __init__(self, sku: str, price: int, stock: int) -> None:
        self.sku = sku
        self.price = price
        self.stock = stock

    def sold(self, buyer: Agent) -> None:
        self.stock -= 1
        self.price += 1 + self.price // 50 if self.stock < 3 else 0

    def __hash__(self) -> int:
        return hash(self.sku)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Good) and other.sku == self.sku


class Event:
    __slots__ = ("agent", "good", "kind", "time")

    def __init__(self, time: int, kind: str, agent: Agent, good: Good | None) -> None:
        self.time = time
        self.kind = kind
        self.agent = agent
        self.good = good

    def __lt__(self, other: Event) -> bool:
        if self.time != other.time:
            return self.time < other.time
        return self.agent.name < other.agent.name


class Market:
    def __init__(self, goods: list[Good]) -> None:
        self.goods = goods
        self.ledger: dict[Good, int] = {}

    def pick(self, rng: random.Random) -> Good:
        good = self.goods[rng.randrange(len(self.goods))]
        if good.stock <= 0:
            good.stock += 5
            good.price = max(10, good.price * 3 // 4)
        return good

    def deliver(self, event: Event) -> None:
        assert event.good is not None
        self.ledger[event.good] = self.ledger.get(event.good, 0) + 1
        event.agent.account.deposit(event.good.price // 20)


def simulate(rng: random.Random, n_agents: int, until: int) -> list[Any]:
    kinds = (Agent, Bargainer, Collector)
    agents = [kinds[i % 3](f"a{i:03d}", Account(f"a{i:03d}", rng.randrange(5_000, 50_000)), rng)
              for i in range(n_agents)]
    market = Market([Good(f"G{k:03d}", rng.randrange(100, 1_500), rng.randrange(1, 8))
                     for k in range(60)])
    queue = [Event(rng.randrange(5), "wake", a, None) for a in agents]
    heapq.heapify(queue)
    while queue and queue[0].time < until:
        event = heapq.heappop(queue)
        if event.kind == "delivery":
            market.deliver(event)
            continue
        for follow in event.agent.act(market, event.time):
            heapq.heappush(queue, follow)
    richest = sorted(agents, key=lambda a: (-a.wealth, a.name))[:3]
    top = sorted(market.ledger.items(), key=lambda kv: (-kv[1], kv[0].sku))[:3]
    return [[(a.name, a.kind, a.wealth, a.trades) for a in richest],
            [(g.sku, n) for g, n in top]]


# -- the program --------------------------------------------------------------------------


def one_round(seed: int, size: float = 1.0) -> list[Any]:
    """One round; ``size`` < 1 shrinks it (orders and agents) in proportion."""
    rng = random.Random(seed)
    orders = make_orders(rng, max(4, round(220 * size)))
    back, text = json_round_trip(orders)
    if back != orders:
        raise AssertionError("JSON round trip changed the orders")
    log = make_log(rng, orders)
    return [hashlib.sha256(text.encode()).hexdigest()[:16], parse_log(log), rank(back),
            simulate(rng, max(3, round(90 * size)), 260)]


def run(scale: float = 1.0) -> str:
    digest = hashlib.sha256()
    rounds = round(ROUNDS * scale)
    if rounds < 1:
        digest.update(repr(one_round(0, ROUNDS * scale)).encode())
    for seed in range(rounds):
        digest.update(repr(one_round(seed)).encode())
    return digest.hexdigest()
