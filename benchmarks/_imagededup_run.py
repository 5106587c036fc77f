"""Run imagededup's hashing methods on a folder; print one JSON object. Runs in imagededup's own venv.

    /work/venvs/imagededup/bin/python benchmarks/_imagededup_run.py FOLDER [--methods PHash,DHash]

Each method runs ``find_duplicates(image_dir=FOLDER)`` with every default (Hamming distance
threshold 10 of 64 bits, brute-force search, all cores) and reports the pairs it returned and its
wall time (hashing and search). Called by ``dedup_bench.py``; it imports nothing from vecmetric.

imagededup imports torch in ``imagededup.methods.cnn`` and ``imagededup.utils.models`` even when
only the hashes are used. A venv installed with ``pip install --no-deps imagededup`` plus what
the hashes need (numpy, scipy, PyWavelets, Pillow, scikit-learn, tqdm, matplotlib) has no
torch: then those two modules are replaced by empty stand-ins before the import, which the
hashing code never touches, and the CNN is reported as not runnable.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import types


def _import_methods():
    try:
        import torch  # noqa: F401

        has_torch = True
    except ImportError:
        has_torch = False
        for name in ("imagededup.utils.models", "imagededup.methods.cnn"):
            stand_in = types.ModuleType(name)
            stand_in.CustomModel = stand_in.CNN = None
            sys.modules[name] = stand_in
    import imagededup.methods as methods

    return methods, has_torch


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("folder")
    p.add_argument("--methods", default="PHash,DHash")
    args = p.parse_args()
    methods, has_torch = _import_methods()
    import imagededup

    out = {"version": getattr(imagededup, "__version__", "?"), "torch": has_torch, "methods": {}}
    for name in args.methods.split(","):
        if name == "CNN" and not has_torch:
            out["methods"][name] = {"error": "torch is not installed in this venv"}
            continue
        started = time.perf_counter()
        try:
            found = getattr(methods, name)(verbose=False).find_duplicates(image_dir=args.folder)
        except Exception as exc:  # noqa: BLE001 - reported, e.g. the CNN's weights download failing offline
            out["methods"][name] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"}
            continue
        seconds = time.perf_counter() - started
        pairs = sorted({tuple(sorted((a, b))) for a, dups in found.items() for b in dups})
        out["methods"][name] = {"seconds": seconds, "pairs": pairs}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
