"""Summarise a py-spy raw profile (`py-spy record -f raw --threads`): samples per thread, per module of the frame
doing the work, and the functions with the most samples of their own."""

from __future__ import annotations

import sys
from collections import Counter

MODULES = ("twisted", "daphne", "asyncio", "aiohttp", "httpx", "channels", "django/db", "django", "json")
OURS = ("routing/", "translation/", "usage/", "llmproxy_site/")


def module(frame: str) -> str:
    for name in OURS + MODULES:
        if name in frame:
            return name
    return "other"


def main(path: str) -> None:
    threads: Counter[str] = Counter()
    modules: Counter[str] = Counter()
    functions: Counter[str] = Counter()
    total = 0
    with open(path) as lines:
        for line in lines:
            stack, _, count = line.rstrip().rpartition(" ")
            frames = stack.split(";")
            n = int(count)
            total += n
            threads[frames[0].split(" (")[0] + " " + frames[0].rsplit(":", 1)[-1].strip()] += n
            modules[module(frames[-1])] += n
            functions[frames[-1]] += n
    print(f"{total} samples")
    for title, counter, top in (("threads", threads, 5), ("modules", modules, 15), ("functions", functions, 25)):
        print(f"-- {title}")
        for name, n in counter.most_common(top):
            print(f"{100 * n / total:5.1f}%  {name[:130]}")


if __name__ == "__main__":
    main(sys.argv[1])
