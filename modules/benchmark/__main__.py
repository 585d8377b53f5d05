"""`python -m modules.benchmark NAME [options]`; NAME is one of BENCHMARKS."""
import importlib
import sys

BENCHMARKS = {"load": "modules.benchmark.load", "generate": "modules.benchmark.generate",
              "conv": "modules.benchmark.conv", "mmdit": "modules.benchmark.mmdit",
              "scale": "modules.benchmark.scale"}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in BENCHMARKS:
        print(f"usage: python -m modules.benchmark {{{','.join(BENCHMARKS)}}} [options]", file=sys.stderr)
        return 2
    return importlib.import_module(BENCHMARKS[argv[0]]).main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
