"""SQLite durability: what ``synchronous=FULL`` costs against ``NORMAL`` for our writes.

Publishes posts through the real service (``posting.publish_post``: render, one
``BEGIN IMMEDIATE`` transaction with the post, its version row, recipients, tags and
notifications, one thread hop) on a real instance folder, once per setting, and prints
commits per second and latency percentiles. The instance runs FULL because a post confirmed
to its author must survive a power cut; this measures the price.

    .venv/bin/python bench/durability.py [--posts 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

from server import cli
from server.bootstrap import open_context
from server.domain import Visibility
from server.services import accounts, posting


async def run(level: str, posts: int, root: Path) -> dict[str, float]:
    inst = root / level.lower()
    cli.cmd_init(inst, "http://127.0.0.1:8000", "Bench")
    config = inst / "config.toml"
    config.write_text(
        config.read_text().replace('synchronous = "FULL"', f'synchronous = "{level}"')
    )
    async with open_context(inst) as ctx:
        author = await accounts.create_user(ctx, "writer", "bench password 123")
        latencies: list[float] = []
        started = time.perf_counter()
        for i in range(posts):
            t0 = time.perf_counter()
            await posting.publish_post(
                ctx,
                author,
                posting.Draft(f"Status update {i} on the #bench work", Visibility.INTERNAL),
            )
            latencies.append((time.perf_counter() - t0) * 1000)
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "posts_per_s": posts / elapsed,
        "p50_ms": statistics.median(latencies),
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=2000, help="posts per setting")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for level in ("FULL", "NORMAL"):
            results[level] = asyncio.run(run(level, args.posts, Path(tmp)))
    print(f"{'synchronous':12} {'posts/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for level, r in results.items():
        print(f"{level:12} {r['posts_per_s']:9.0f} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f}")
    out = Path("bench/results")
    out.mkdir(parents=True, exist_ok=True)
    (out / "durability.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
