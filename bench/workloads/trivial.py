"""A trivial program: what a tracer costs when there is almost nothing to trace."""


def main() -> int:
    return sum(range(10))


if __name__ == "__main__":
    main()
