"""A steady mixed load on the API from its own process (reads and writes over many tenants),
used by bench/api_latency.py. Prints one JSON object: latencies by kind, errors.

    python bench/load.py --url http://127.0.0.1:8765 --targets targets.json --seconds 30
"""

from __future__ import annotations

import argparse
import json
import random
import time

import httpx


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--targets", required=True, help="JSON: [[token, product_id, base], ...]")
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    with open(args.targets) as handle:
        targets = json.load(handle)
    rng = random.Random(args.seed)
    latencies: dict[str, list[float]] = {"read": [], "write": []}
    errors: list[str] = []
    deadline = time.monotonic() + args.seconds
    with httpx.Client(base_url=args.url, timeout=10) as client:
        while time.monotonic() < deadline:
            token, product, _base = rng.choice(targets)
            headers = {"Authorization": f"Bearer {token}"}
            kind = "write" if rng.random() < 0.2 else "read"
            started = time.perf_counter()
            try:
                if kind == "read":
                    response = client.get(f"/api/products/{product}/images", headers=headers)
                else:
                    images = client.get(f"/api/products/{product}/images", headers=headers)
                    order = [i["id"] for i in images.json()["images"]]
                    rng.shuffle(order)
                    started = time.perf_counter()
                    response = client.put(
                        f"/api/products/{product}/images/order",
                        json={"image_ids": order},
                        headers=headers,
                    )
                elapsed = time.perf_counter() - started
                if response.status_code >= 400:
                    errors.append(f"{response.status_code} {response.text[:100]}")
                else:
                    latencies[kind].append(elapsed)
            except httpx.HTTPError as exc:
                errors.append(repr(exc))
    print(json.dumps({"latencies": latencies, "errors": errors}))


if __name__ == "__main__":
    main()
