"""Printing cost per message: json_format.MessageToDict vs gateway.json_printer, one run.

The gateway prints every response with `always_print_fields_with_no_presence=True`;
DESIGN.md §8 names that JSON codec as its largest cost. Both printers run here side by
side, on the same messages, in the same process, so the ratio holds even on a noisy
machine where absolute figures drift. Each figure is the best of several repeats.

    .venv/bin/python bench/codec.py [--number 2000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import timeit
from collections.abc import Callable
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from gateway import json_printer
from orchestrator.jobengine.v1 import source_pb2, sources_service_pb2


def make_source(i: int) -> source_pb2.Source:
    """A Source as the server returns it: ids, names, flags and two timestamps."""
    source = source_pb2.Source(
        source_id=f"0b6c1f4e-7a8d-4c1e-9f3a-{i:012d}",
        name=f"source-{i:06d}",
        source_type=("scheduler", "webhook", "manual")[i % 3],
        enabled=i % 5 != 0,
        paused=i % 7 == 0,
    )
    source.created_at.FromNanoseconds(1_763_900_000_123_000_000 + i * 1_000_000_000)
    source.updated_at.FromNanoseconds(1_763_900_500_123_456_000 + i * 1_000_000_000)
    return source


def make_page(size: int) -> sources_service_pb2.ListSourcesResponse:
    return sources_service_pb2.ListSourcesResponse(
        items=[make_source(i) for i in range(size)], continuation_token="bmV4dA"
    )


def best_us(call: Callable[[], Any], number: int, repeat: int) -> float:
    """Best-of-`repeat` mean in µs: the least disturbed run is the closest to the cost."""
    return min(timeit.repeat(call, number=number, repeat=repeat)) / number * 1e6


def compare(label: str, message: Message, number: int, repeat: int) -> None:
    def slow() -> Any:
        return json_format.MessageToDict(message, always_print_fields_with_no_presence=True)

    def fast() -> Any:
        return json_printer.to_jsonable(message)

    if fast() != slow():
        raise SystemExit(f"{label}: json_printer and json_format disagree")
    old, new = best_us(slow, number, repeat), best_us(fast, number, repeat)
    print(f"{label:<32} {old:>12.1f} {new:>12.1f} {old / new:>7.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=2000, help="calls per repeat")
    parser.add_argument("--repeat", type=int, default=7, help="repeats; the best counts")
    args = parser.parse_args()
    json_printer.to_jsonable(make_source(0))  # build the printers outside the timing
    print(f"{'message':<32} {'json_format µs':>12} {'json_printer µs':>12} {'ratio':>7}")
    compare("Source", make_source(1), args.number, args.repeat)
    page_number = max(1, args.number // 50)
    compare("ListSourcesResponse (50 items)", make_page(50), page_number, args.repeat)


if __name__ == "__main__":
    main()
