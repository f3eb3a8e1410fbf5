"""How much of a Fashion-MNIST training epoch the input pipeline costs.

    python -m benchmarks.loader_overhead [--batch-size 128] [--steps 20]

Times one full epoch of loading (uint8 batches from memory) and of batch augmentation, then a
few real ResNet-20 training steps, and reports the pipeline's share of an epoch.
"""

from __future__ import annotations

import argparse
import time

import torch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20, help="training steps timed")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="bf16")
    args = parser.parse_args(argv)

    from resnet_pl import create_model
    from resnet_pl.lightning.augment import batch_augment
    from resnet_pl.lightning.data import ImageDataModule

    dm = ImageDataModule("fashion_mnist", batch_size=args.batch_size)
    dm.setup("fit")
    t0 = time.perf_counter()
    batches = list(dm.train_dataloader())
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for x, _ in batches:
        batch_augment(x, size=28, mean=dm.mean, std=dm.std, crop_padding=2, hflip=True,
                      random_erasing=0.25)  # fmt: skip
    augment_s = time.perf_counter() - t0

    model = create_model("resnet20", in_chans=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = batches[0]
    xf = batch_augment(x, size=28, mean=dm.mean, std=dm.std)

    def step() -> None:
        with torch.autocast("cpu", torch.bfloat16, enabled=args.precision == "bf16"):
            loss = torch.nn.functional.cross_entropy(model(xf), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    step_s = (time.perf_counter() - t0) / args.steps
    train_s = step_s * len(batches)
    share = (load_s + augment_s) / (load_s + augment_s + train_s)
    print(f"batches/epoch {len(batches)}, threads {torch.get_num_threads()}, {args.precision}")
    print(f"loading   {load_s:7.2f} s/epoch")
    print(f"augment   {augment_s:7.2f} s/epoch")
    print(f"training  {train_s:7.2f} s/epoch ({step_s * 1000:.0f} ms/step, ResNet-20)")
    print(f"input pipeline share of an epoch: {share:.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
