"""A small shop: the bundled example traced by the README's first command."""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass
class Item:
    name: str
    price: float
    qty: int = 1

    def total(self) -> float:
        return self.price * self.qty


class Cart:
    def __init__(self) -> None:
        self.items: list[Item] = []

    def add(self, name: str, price: float, qty: int = 1) -> None:
        self.items.append(Item(name, price, qty))

    def total(self) -> float:
        return sum(item.total() for item in self.items)


def discount(total: float) -> float:
    if total > 100:
        return total * 0.9
    return total


def checkout(cart: Cart) -> str:
    amount = discount(cart.total())
    if amount <= 0:
        raise ValueError("empty cart")
    return json.dumps({"items": len(cart.items), "amount": round(amount, 2)})


def main() -> None:
    cart = Cart()
    cart.add("book", 12.5, 2)
    cart.add("lamp", 80.0)
    print(checkout(cart))
    try:
        checkout(Cart())
    except ValueError as exc:
        print("refused:", exc)


if __name__ == "__main__":
    main()
