"""Data classes the parser builds."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Field:
    name: str
    value: object

    def numeric(self) -> float | None:
        v = self.value
        return float(v) if isinstance(v, (int, float)) else None


@dataclass
class Record:
    name: str
    fields: dict[str, Field] = field(default_factory=dict)

    def add(self, f: Field) -> None:
        self.fields[f.name] = f

    def get(self, name: str, default: object = None) -> object:
        f = self.fields.get(name)
        return default if f is None else f.value

    def metrics(self) -> list[float]:
        out = []
        for f in self.fields.values():
            if f.name.startswith("m"):
                v = f.numeric()
                if v is not None:
                    out.append(v)
        return out

    @property
    def region(self) -> str:
        return str(self.get("region", "?"))

    @property
    def tags(self) -> list[str]:
        v = self.get("tags", [])
        return v if isinstance(v, list) else []
