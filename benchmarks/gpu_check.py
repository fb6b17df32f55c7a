"""One-shot GPU check: throughput, a 1000-subject fit, bf16 against float32, peak memory.

Made to run once, in under 8 minutes, on a machine with one CUDA card (H100/H200
class), and to print one table (and write it as JSON with ``--out``):

* **throughput** -- training samples per second of the iVAE's training loop
  (``trends_ivae.estimators.nn.train.train_model``, one restart, a fixed number of
  epochs at a large batch) on the CPU and on the GPU, in float32 and with bf16
  autocast, with the data resident on the device and streamed to it from host memory
  in chunks (``stream_rows``);
* **cohort** -- the time to fit the reduced data of a simulated cohort of 1000
  subjects (200 volumes each, 20 dimensions, 10 sources, u = 20-volume windows: 10 000
  levels), in float32 and in bf16, and the MCC of each fit against the true sources:
  the quality check is that bf16's MCC is within 0.01 of float32's;
* **peak GPU memory** of each GPU row (``torch.cuda.max_memory_allocated``).

All data are generated where they are used (``torch`` random numbers on the device:
the iVAE paper's model, segment-wise Gaussian sources with random scales through a
random leaky-tanh MLP), so nothing large is copied to the machine. Without CUDA the
GPU rows are listed as absent. ``--tiny`` shrinks every size so that the whole check
runs in seconds on a CPU (what the test suite runs).

Usage::

    python benchmarks/gpu_check.py --out gpu_check.json          # on the GPU machine
    OMP_NUM_THREADS=1 python benchmarks/gpu_check.py --tiny        # seconds, CPU
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass

#: the bar of the bf16 quality check
MCC_TOLERANCE = 0.01


@dataclass
class Sizes:
    """How big each part of the check is."""

    n_sources: int = 10
    throughput_segments: int = 1000       # x per_segment samples (1M)
    per_segment: int = 1000
    throughput_epochs: int = 3
    cpu_samples: int = 200_000            # the CPU row: fewer samples, the same rate
    batch_size: int = 4096
    stream_rows: int = 262_144
    subjects: int = 1000
    volumes: int = 200
    window: int = 20
    n_dims: int = 20
    cohort_epochs: int = 60
    cohort_batch: int = 2048
    mcc_rows: int = 100_000


TINY = Sizes(n_sources=3, throughput_segments=8, per_segment=250, throughput_epochs=1, cpu_samples=2000,
             batch_size=256, stream_rows=512, subjects=6, volumes=40, window=10, n_dims=5, cohort_epochs=2,
             cohort_batch=128, mcc_rows=2000)


@dataclass
class Row:
    """One line of the table."""

    what: str
    device: str
    precision: str
    data: str
    status: str = "ok"
    samples: int = 0
    epochs: int = 0
    seconds: float | None = None
    samples_per_s: float | None = None
    mcc: float | None = None
    peak_gpu_mb: float | None = None


def simulate_segments(torch, n_segments: int, per_segment: int, n_sources: int, n_obs: int, device,
                      seed: int):
    """The iVAE paper's data, drawn on ``device``: returns X (N, n_obs), U (N, 1) level
    indices (float) and the true sources S (N, n_sources)."""
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    n = n_segments * per_segment
    stds = 0.5 + 2.5 * torch.rand((n_segments, n_sources), generator=g, device=device)
    u = torch.arange(n_segments, device=device).repeat_interleave(per_segment)
    S = stds[u] * torch.randn((n, n_sources), generator=g, device=device)
    h = S
    for layer in range(3):
        w = torch.randn((h.shape[1], n_obs), generator=g, device=device) / math.sqrt(h.shape[1])
        if h.shape[1] >= n_obs:   # orthonormal columns: a well-conditioned layer
            w = torch.linalg.qr(w)[0]
        h = h @ w
        if layer < 2:
            h = torch.where(h > 0, torch.tanh(h), 0.1 * h + 0.9 * torch.tanh(h))
    X = (h - h.mean(0)) / h.std(0).clamp_min(1e-6)
    return X.float(), u[:, None].float(), S


def _configs() -> list[tuple[str, bool, bool]]:
    """(device, bf16, streamed) of each throughput row; the GPU rows always listed."""
    rows = [("cpu", False, False)]
    rows += [("cuda", amp, streamed) for streamed in (False, True) for amp in (False, True)]
    return rows


def _train(torch, X, U, n_sources: int, n_levels: int, *, device, amp: bool, epochs: int, batch: int,
           stream_rows: int | None):
    from trends_ivae.estimators.nn.config import IVAEConfig, TrainConfig
    from trends_ivae.estimators.nn.run import TrainRun
    from trends_ivae.estimators.nn.train import train_model

    mc = IVAEConfig(n_features=int(X.shape[1]), n_components=n_sources, n_aux=n_levels, aux_kind="discrete")
    tc = TrainConfig(max_epochs=epochs, batch_size=batch, patience=10 ** 6, amp=amp, val_frac=0.1)
    run = TrainRun(seed=0, device=device, stream_rows=stream_rows)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    res = train_model(mc, tc, X, U, run)
    if device.type == "cuda":
        torch.cuda.synchronize()
    sec = time.perf_counter() - t0
    n_train = int(X.shape[0]) - int(round(int(X.shape[0]) * tc.val_frac))
    peak = torch.cuda.max_memory_allocated() / 2 ** 20 if device.type == "cuda" else None
    return res.model, sec, n_train, peak


def _warm_up(torch, sizes: Sizes, device, amp: bool) -> None:
    """One short fit first (kernels, the allocator, lazy imports), not timed."""
    X, U, _ = simulate_segments(torch, 4, 256, sizes.n_sources, sizes.n_sources, device, seed=9)
    _train(torch, X, U, sizes.n_sources, 4, device=device, amp=amp, epochs=1, batch=256, stream_rows=None)


def _mcc(torch, model, X, U, S, rows: int) -> float:
    from trends_ivae.metrics import mcc

    dev = next(model.parameters()).device
    idx = torch.randperm(int(X.shape[0]), generator=torch.Generator().manual_seed(0))[:rows]
    with torch.no_grad():
        z = model.encode(X[idx.to(X.device)].to(dev), U[idx.to(U.device)].to(dev))[0]
    return float(mcc(z.float().cpu().numpy(), S[idx.to(S.device)].float().cpu().numpy()).score)


def throughput(torch, sizes: Sizes, cuda: bool) -> list[Row]:
    """Samples per second per device, precision and data placement."""
    out = []
    for dev_name, amp, streamed in _configs():
        row = Row("throughput", dev_name, "bf16 autocast" if amp else "float32",
                  "streamed" if streamed else "resident")
        if dev_name == "cuda" and not cuda:
            row.status = "absent (no CUDA device)"
            out.append(row)
            continue
        device = torch.device(dev_name)
        _warm_up(torch, sizes, device, amp)
        n_seg = sizes.throughput_segments
        if dev_name == "cpu":
            n_seg = max(2, sizes.cpu_samples // sizes.per_segment)
        X, U, S = simulate_segments(torch, n_seg, sizes.per_segment, sizes.n_sources, sizes.n_sources,
                                    device, seed=1)
        if streamed:   # host memory, moved in chunks
            X, U = X.cpu(), U.cpu()
        model, sec, n_train, peak = _train(torch, X, U, sizes.n_sources, n_seg, device=device, amp=amp,
                                           epochs=sizes.throughput_epochs, batch=sizes.batch_size,
                                           stream_rows=sizes.stream_rows if streamed else None)
        row.samples, row.epochs, row.seconds = int(X.shape[0]), sizes.throughput_epochs, sec
        row.samples_per_s = sizes.throughput_epochs * n_train / sec
        row.peak_gpu_mb = peak
        out.append(row)
        del X, U, S, model
    return out


def cohort(torch, sizes: Sizes, cuda: bool) -> list[Row]:
    """A 1000-subject cohort's reduced data fitted in float32 and in bf16, on the GPU
    (on the CPU with ``--tiny`` when there is none), with the MCC of each fit."""
    out = []
    dev_name = "cuda" if cuda else "cpu"
    n_windows = sizes.volumes // sizes.window
    n_levels = sizes.subjects * n_windows
    for amp in (False, True):
        row = Row(f"cohort of {sizes.subjects} subjects", dev_name, "bf16 autocast" if amp else "float32",
                  "resident")
        if not cuda and (amp or sizes.subjects >= 100):
            row.status = "absent (no CUDA device)"
            out.append(row)
            continue
        device = torch.device(dev_name)
        X, U, S = simulate_segments(torch, n_levels, sizes.window, sizes.n_sources, sizes.n_dims, device,
                                    seed=2)
        model, sec, n_train, peak = _train(torch, X, U, sizes.n_sources, n_levels, device=device, amp=amp,
                                           epochs=sizes.cohort_epochs, batch=sizes.cohort_batch,
                                           stream_rows=None)
        row.samples, row.epochs, row.seconds = int(X.shape[0]), sizes.cohort_epochs, sec
        row.samples_per_s = sizes.cohort_epochs * n_train / sec
        row.mcc = _mcc(torch, model, X, U, S, sizes.mcc_rows)
        row.peak_gpu_mb = peak
        out.append(row)
        del X, U, S, model
    return out


def _fmt(v, spec: str) -> str:
    return "–" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


def table(rows: list[Row]) -> str:
    """The markdown table of the rows."""
    lines = ["| what | device | precision | data | samples | epochs | s | samples / s | MCC | peak GPU MB | status |",
             "|---|---|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r.what} | {r.device} | {r.precision} | {r.data} | {r.samples or '–'} | {r.epochs or '–'} "
                     f"| {_fmt(r.seconds, '.1f')} | {_fmt(r.samples_per_s, ',.0f')} | {_fmt(r.mcc, '.3f')} "
                     f"| {_fmt(r.peak_gpu_mb, '.0f')} | {r.status} |")
    return "\n".join(lines)


def bf16_check(rows: list[Row]) -> dict:
    """bf16's MCC against float32's on the cohort (None where either is absent)."""
    by = {r.precision: r.mcc for r in rows if r.what.startswith("cohort")}
    a, b = by.get("float32"), by.get("bf16 autocast")
    diff = None if a is None or b is None else b - a
    return {"float32_mcc": a, "bf16_mcc": b, "difference": diff, "tolerance": MCC_TOLERANCE,
            "passed": None if diff is None else bool(abs(diff) <= MCC_TOLERANCE)}


def run_check(sizes: Sizes, threads: int | None = None) -> dict:
    """Run every part; the result as a JSON-ready dict (``machine``, ``sizes``, ``rows``,
    ``bf16_check``, ``seconds``)."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    cuda = torch.cuda.is_available()
    t0 = time.perf_counter()
    rows = throughput(torch, sizes, cuda) + cohort(torch, sizes, cuda)
    machine = {"cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
               "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
               "gpu": torch.cuda.get_device_name(0) if cuda else None, "python": platform.python_version()}
    return {"machine": machine, "sizes": asdict(sizes), "rows": [asdict(r) for r in rows],
            "bf16_check": bf16_check(rows), "seconds": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--tiny", action="store_true", help="every size shrunk: seconds on a CPU (the test)")
    p.add_argument("--out", metavar="JSON", help="write the table and the machine here")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = p.parse_args(argv)
    result = run_check(TINY if args.tiny else Sizes(), threads=args.threads)
    m = result["machine"]
    print(f"# {m['gpu'] or 'no CUDA device'}; CPU {m['cpu']} ({m['cpu_count']} cores, {m['torch_threads']} "
          f"torch threads); torch {m['torch']}; {result['seconds']:.0f} s in all")
    from types import SimpleNamespace

    print(table([SimpleNamespace(**r) for r in result["rows"]]))
    chk = result["bf16_check"]
    if chk["passed"] is None:
        print("\nbf16 vs float32: not measured (no CUDA device)")
    else:
        print(f"\nbf16 vs float32 MCC on the cohort: {chk['bf16_mcc']:.3f} vs {chk['float32_mcc']:.3f} "
              f"(difference {chk['difference']:+.3f}, bar |difference| <= {MCC_TOLERANCE}: "
              f"{'met' if chk['passed'] else 'NOT met'})")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
