"""Cost of redacting one exported string (``otel_ai.redaction.Redactor.redact``).

Redaction runs on the export worker threads for every string attribute, log body and
name; it shares the GIL with the experiment's thread, so its cost shows up in
benchmarks/bench_emit.py too. This measures it directly, per kind of string:

- a log line with no hint of a secret (the common case: a few substring tests);
- a JSON-encoded attribute of 4 KB (a dict value) with no secret;
- a line with hints but no secret (``max_tokens=``, ``key``: every pattern runs);
- lines with a sha1 and a path (40-character runs that must not be taken for AWS keys);
- a line with three secrets (every pattern runs and replaces).

Run it on two checkouts to compare (``PYTHONPATH=<checkout> python benchmarks/bench_redaction.py``).
"""

from __future__ import annotations

import argparse
import json
import platform
import timeit

from otel_ai.redaction import Redactor

SAMPLES = {
    "plain log line": "Epoch 3/10 step 1200 loss=0.2531 acc=0.9123 lr=0.0003 time=12.3s on cuda:0",
    "JSON attribute 4 KB": json.dumps(
        {"node": {"plan": "x" * 3000, "metric": 0.5, "files": ["plot_a.png", "plot_b.png"]}}
    ),
    "hints, no secret": "max_tokens=1024 temperature=0.7 model=gpt-4o key insight follows",
    "sha1 and path": "commit 9fceb02d0ae598e95dc970b74767f19372d61af8 checkpoint runs/2024/abcdefABCDEF0123456789abcdefABCDEF0123/x",
    "three secrets": "OPENAI_API_KEY=sk-proj-"
    + "A1b2C3d4E5" * 4
    + " aws AKIAIOSFODNN7EXAMPLE wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--number", type=int, default=20000, help="calls per sample and repeat (default 20000)"
    )
    parser.add_argument("--repeat", type=int, default=5, help="repeats; the best is reported (default 5)")
    args = parser.parse_args()
    redactor = Redactor(environ={})
    print(
        f"# {platform.python_implementation()} {platform.python_version()} on {platform.machine()}, best of {args.repeat}"
    )
    print(f"{'string':24} {'chars':>6} {'us per call':>12}")
    for name, text in SAMPLES.items():
        best = min(
            timeit.repeat(lambda text=text: redactor.redact(text), number=args.number, repeat=args.repeat)
        )
        print(f"{name:24} {len(text):6d} {best / args.number * 1e6:12.2f}")


if __name__ == "__main__":
    main()
