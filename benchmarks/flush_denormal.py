"""Flush-to-zero A/B: does ``torch.set_flush_denormal(True)`` speed up late-training steps on CPU?

    python -m benchmarks.flush_denormal [--repeats 6] [--steps 8] [--threads 1]

Late-training weights are the shipped ``wrn_16_2.fashion_mnist`` (the last epoch of a 120-epoch
cosine run). Two copies of it (A: denormals as IEEE, B: flushed to zero) keep training with the
recipe's settings (``configs/fashion_mnist_wrn16_2.yaml``: SGD Nesterov, momentum 0.9, weight
decay 5e-4, label smoothing 0.1, bf16 autocast, channels_last, batch 256, random crops and
flips) at the learning rate the cosine schedule gives at ``--epoch`` (default 110 of 120). Blocks
of ``--steps`` steps alternate A B B A ... so slow drifts of a shared machine hit both arms alike;
each arm's step times are pooled and compared by their medians (B / A < 1: flushing is faster),
and each adjacent A/B pair gives a ratio (the median of those resists load swings best).
Before timing, the denormal floats in each arm's weights, gradients and momentum buffers are
counted (flushing can only help when there are some). Writes
``benchmarks/results/flush_denormal-<time>.json``, with the load average before and after, CPU
flags and versions: on a machine shared with other work the ratio is the only figure to read.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import statistics
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
FP32_TINY = 2.0**-126  # smallest normal float32


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", default="wrn_16_2.fashion_mnist")
    p.add_argument("--repeats", type=int, default=6, help="A/B block pairs")
    p.add_argument("--steps", type=int, default=8, help="training steps per block")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per arm first")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--epoch", type=float, default=110.0, help="where in the schedule (of 120)")
    p.add_argument("--out-dir", type=Path, default=RESULTS)
    return p.parse_args(argv)


def cosine_lr(epoch: float, lr0: float = 0.2, epochs: int = 120, warmup: float = 1.0) -> float:
    """The recipe's cosine schedule after its linear warm-up, at ``epoch``."""
    if epoch < warmup:
        return lr0 * epoch / warmup
    return lr0 * 0.5 * (1 + math.cos(math.pi * (epoch - warmup) / (epochs - warmup)))


def count_denormals(model: Any, opt: Any) -> dict[str, int]:
    import torch

    def n(ts: list[torch.Tensor]) -> int:
        return int(sum(((t != 0) & (t.abs() < FP32_TINY)).sum().item() for t in ts))

    params = [p.detach() for p in model.parameters()]
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    bufs = [
        s["momentum_buffer"] for s in opt.state.values() if s.get("momentum_buffer") is not None
    ]
    return {
        "weights": n(params),
        "grads": n(grads),
        "momentum": n(bufs),
        "total_values": int(sum(p.numel() for p in params)),
    }


def activation_denormals(model: Any, x: Any) -> dict[str, int]:
    """Denormal values among the outputs of every layer in one bf16-autocast training-mode
    forward (BatchNorm statistics are not updated: a deep copy is used)."""
    import torch

    counts = {"denormal": 0, "values": 0}
    net = copy.deepcopy(model)

    def hook(module: Any, inputs: Any, output: Any) -> None:
        if isinstance(output, torch.Tensor) and output.is_floating_point():
            o = output.detach().float()
            counts["denormal"] += int(((o != 0) & (o.abs() < FP32_TINY)).sum().item())
            counts["values"] += o.numel()

    for m in net.modules():
        m.register_forward_hook(hook)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        net(x)
    return counts


def main(argv: list[str] | None = None) -> int:
    import torch
    import torch.nn.functional as F

    from benchmarks.report import cpu_flags, machine_info, versions, write_json
    from resnet_pl import create_model
    from resnet_pl.data import load_idx_dataset
    from resnet_pl.lightning.augment import batch_augment

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    load_before = [round(v, 2) for v in os.getloadavg()]
    x_all, y_all = load_idx_dataset("fashion_mnist", "train", None)
    gen = torch.Generator().manual_seed(0)
    lr = cosine_lr(args.epoch)

    def make_arm() -> dict[str, Any]:
        model = create_model(args.weights, pretrained=True).train()
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        opt = torch.optim.SGD(
            model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4
        )
        return {"model": model, "opt": opt, "times": []}

    base = make_arm()
    twin = copy.deepcopy(base["model"])
    arms = {
        "A_ieee": base,
        "B_flush": {
            "model": twin,
            "opt": torch.optim.SGD(
                twin.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4
            ),
            "times": [],
        },
    }
    flush = {"A_ieee": False, "B_flush": True}

    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(0, len(y_all), (args.batch_size,), generator=gen)
        x = batch_augment(
            x_all[idx],
            size=28,
            mean=[0.286],
            std=[0.353],
            crop_padding=2,
            hflip=True,
            random_erasing=0.5,
        )
        return x.contiguous(memory_format=torch.channels_last), y_all[idx]

    def step(arm: dict[str, Any], x: torch.Tensor, y: torch.Tensor) -> float:
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = arm["model"](x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=0.1)
        arm["opt"].zero_grad(set_to_none=True)
        loss.backward()
        arm["opt"].step()
        return time.perf_counter() - t0

    # Warm-up (and the denormal census after it: gradients and momentum exist by then).
    for name, arm in arms.items():
        torch.set_flush_denormal(flush[name])
        for _ in range(args.warmup):
            step(arm, *batch())
    census = {name: count_denormals(a["model"], a["opt"]) for name, a in arms.items()}
    census["activations_one_forward"] = activation_denormals(base["model"], batch()[0])

    order: list[str] = []
    for r in range(args.repeats):
        order += ["A_ieee", "B_flush"] if r % 2 == 0 else ["B_flush", "A_ieee"]
    blocks = []
    for name in order:
        torch.set_flush_denormal(flush[name])
        times = [step(arms[name], *batch()) for _ in range(args.steps)]
        arms[name]["times"] += times
        blocks.append({"arm": name, "median_s": round(statistics.median(times), 4)})
        print(f"{name}: median step {statistics.median(times):.3f} s", flush=True)
    torch.set_flush_denormal(False)
    census_after = {name: count_denormals(a["model"], a["opt"]) for name, a in arms.items()}

    med = {name: statistics.median(a["times"]) for name, a in arms.items()}
    pair_ratios = []
    for i in range(0, len(blocks), 2):
        a, b = blocks[i], blocks[i + 1]
        ra = a if a["arm"] == "A_ieee" else b
        rb = b if ra is a else a
        pair_ratios.append(round(rb["median_s"] / ra["median_s"], 4))
    doc = {
        "benchmark": "flush_denormal",
        "time": time.strftime("%Y%m%d-%H%M%S"),
        "command": "python -m benchmarks.flush_denormal " + " ".join(argv or []),
        "machine": machine_info(),
        "cpu_flags": cpu_flags(),
        "loadavg_before": load_before,
        "loadavg_after": [round(v, 2) for v in os.getloadavg()],
        "machine_shared": True,
        "torch_threads": torch.get_num_threads(),
        "versions": versions(),
        "settings": {
            **{k: str(v) for k, v in vars(args).items()},
            "lr": lr,
            "precision": "bf16 autocast",
            "channels_last": True,
        },
        "denormals_after_warmup": census,
        "denormals_at_end": census_after,
        "blocks": blocks,
        "median_step_s": {k: round(v, 4) for k, v in med.items()},
        "ratio_flush_over_ieee": round(med["B_flush"] / med["A_ieee"], 4),
        "pair_ratios_flush_over_ieee": pair_ratios,
        "median_pair_ratio_flush_over_ieee": round(statistics.median(pair_ratios), 4),
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    out = args.out_dir / f"flush_denormal-{doc['time']}.json"
    write_json(doc, [out])
    print(f"ratio flush / ieee (median step time): {doc['ratio_flush_over_ieee']}; wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
