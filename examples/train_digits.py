"""Train a small CNN on scikit-learn's 8x8 digits, with nn.Conv2d and with torchconv.Conv2d.

Both runs start from the same seed, so they begin with bit-identical parameters and see the
batches in the same order; the only difference is which convolution computes the forward and
backward passes. The data set ships with scikit-learn (no download).

    python examples/train_digits.py [--epochs 15] [--batch-size 64] [--threads 1]
"""

import argparse
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.datasets import load_digits
from tqdm import tqdm

import torchconv


def make_model(conv_cls):
    """conv -> BN -> ReLU -> pool, twice, then a linear head: 1x8x8 -> 10 logits."""
    return nn.Sequential(
        conv_cls(1, 16, 3, padding=1, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.MaxPool2d(2),  # 16 x 4 x 4
        conv_cls(16, 32, 3, padding=1, bias=False),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.MaxPool2d(2),  # 32 x 2 x 2
        nn.Flatten(),
        nn.Dropout(0.1),
        nn.Linear(32 * 2 * 2, 10),
    )


def load_data(seed):
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0  # N x 1 x 8 x 8
    y = torch.tensor(digits.target, dtype=torch.long)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    n_test = len(x) // 5
    test, train = order[:n_test], order[n_test:]
    mean, std = x[train].mean(), x[train].std()
    x = (x - mean) / std
    return (x[train], y[train]), (x[test], y[test])


def train(conv_cls, name, data, epochs, batch_size, seed):
    (x_train, y_train), (x_test, y_test) = data
    torch.manual_seed(seed)
    model = make_model(conv_cls)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    steps_per_epoch = (len(x_train) + batch_size - 1) // batch_size
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=1e-2, total_steps=epochs * steps_per_epoch)
    generator = torch.Generator().manual_seed(seed)

    start = time.perf_counter()
    with tqdm(total=epochs * steps_per_epoch, desc=f"{name:>16}", unit="step",
              mininterval=0.25) as bar:
        for epoch in range(epochs):
            model.train()
            order = torch.randperm(len(x_train), generator=generator)
            for i in range(0, len(x_train), batch_size):
                idx = order[i:i + batch_size]
                loss = F.cross_entropy(model(x_train[idx]), y_train[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}", refresh=False)
                bar.update()
    elapsed = time.perf_counter() - start

    model.eval()
    with torch.no_grad():
        logits = model(x_test)
    accuracy = (logits.argmax(1) == y_test).float().mean().item()
    return model, logits, accuracy, elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (the layers are tiny: more threads mostly add "
                             "synchronisation, and hurt badly on a busy machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    data = load_data(args.seed)
    print(f"digits: {len(data[0][0])} train / {len(data[1][0])} test images, 8x8, 10 classes")
    runs = {}
    for conv_cls, name in ((nn.Conv2d, "nn.Conv2d"), (torchconv.Conv2d, "torchconv.Conv2d")):
        runs[name] = train(conv_cls, name, data, args.epochs, args.batch_size, args.seed)

    (_, logits_native, acc_native, t_native) = runs["nn.Conv2d"]
    (_, logits_ours, acc_ours, t_ours) = runs["torchconv.Conv2d"]
    print()
    print(f"{'':18}{'test accuracy':>15}{'train time':>12}")
    print(f"{'nn.Conv2d':18}{acc_native:>14.2%}{t_native:>11.2f}s")
    print(f"{'torchconv.Conv2d':18}{acc_ours:>14.2%}{t_ours:>11.2f}s")
    print(f"largest |logit difference| on the test set: "
          f"{(logits_native - logits_ours).abs().max().item():.3e}")
    print(f"predictions that differ: {(logits_native.argmax(1) != logits_ours.argmax(1)).sum()}")
    target = 0.97
    for name, acc in (("nn.Conv2d", acc_native), ("torchconv.Conv2d", acc_ours)):
        if acc < target:
            print(f"warning: {name} reached {acc:.2%}, below the {target:.0%} target "
                  "(try more --epochs)")


if __name__ == "__main__":
    main()
