"""airbench94 and airbench94_muon written in PyTorch, trained on the images cnnlab loads: the
peer `bench/peer_speed.py` times cnnlab against.

    python bench/peer_torch.py CONFIG --set data.root=ROOT [--epochs 3]
        [--precision float32|mixed_bfloat16] [--compile] [--json OUT]

CONFIG is one of the shipped airbench recipes; its optimizer picks which of airbench's two
scripts is followed (sgd: airbench94, muon: airbench94_muon; github KellerJordan/cifar10-airbench).
The images come from cnnlab's own loader, `cnnlab.data.load_dataset(cfg.data, cfg.seed)`, so the
training and validation images are the ones `cnnlab train` splits from the same folder. Only the
data, the epochs and the seed are taken from the config; the network and the training method
are airbench's:

- the network: a frozen 2x2 patch-whitening convolution (24 filters: eigenvectors of 5,000
  training images' patch covariance and their negatives) with a trained bias, GELU, three
  blocks of conv3x3-maxpool-BatchNorm-GELU-conv3x3-BatchNorm-GELU (64, 256, 256 filters, the
  first in-channels filters of each conv identities, BatchNorm with a shift only, eps 1e-12,
  PyTorch momentum 0.4), max pooling, a 256 x 10 linear head without bias, the logits scaled
  by 1/9 (airbench94) or by 1/256 with the head's weights at unit std (airbench94_muon);
- the loss: cross-entropy with label smoothing 0.2, summed over the batch;
- airbench94: Nesterov SGD (momentum 0.85; rate 11.5 and decay 0.0153 per 1,024 examples,
  divided by 1 + 1 / (1 - momentum); BatchNorm's shifts at 64x the rate, decayed alike), the
  rate a triangle from 0.2 up to 1 at 23% of the steps and down to 0.07; the whitening bias
  trained for the first 3 epochs; from epoch 4, Lookahead every 5 steps towards an average
  whose decay is 0.95^5 x progress^3, copied back after each epoch;
- airbench94_muon: Muon (rate 0.24, Nesterov momentum 0.6, 3 Newton-Schulz steps in bfloat16,
  each filter bank rescaled to norm sqrt(filters) before its step) for the 3x3 filters;
  Nesterov SGD (momentum 0.85) for the rest: BatchNorm's shifts and the whitening bias at 0.053,
  the head at 0.67, decay 2e-6 x batch; every rate falling linearly to 0 at the last step, the
  whitening bias's at the end of epoch 3 (then frozen);
- the data: images normalised by CIFAR-10's mean and std, each mirrored at random once, then
  all of them mirrored every other epoch; a random translation of up to 2 pixels (reflected
  edges) drawn per image each epoch; shuffled batches, the last partial one dropped;
- on the CPU: channels_last tensors; `--precision mixed_bfloat16` runs the forward and backward
  passes under `torch.autocast("cpu", torch.bfloat16)` (float32 weights, as cnnlab's
  mixed_bfloat16); `--compile` trains a `torch.compile`d network (and Newton-Schulz step).

Every epoch prints (and --json writes) its training seconds, process CPU seconds and images
(the data augmentation included, the validation not), the mean training loss, and the
accuracy on the validation images (one view, no test-time augmentation, as airbench's per-epoch
val_acc).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
WIDTHS = (64, 256, 256)


class BatchNorm(nn.BatchNorm2d):
    """BatchNorm with a trained shift and a scale fixed at 1 (airbench's)."""

    def __init__(self, channels: int, momentum: float = 0.6):
        super().__init__(channels, eps=1e-12, momentum=1 - momentum)
        self.weight.requires_grad = False


class Conv(nn.Conv2d):
    """A 3x3 'same' convolution without bias whose first in-channels filters start as
    identities (PyTorch's uniform initialisation for the rest)."""

    def __init__(self, channels_in: int, channels_out: int):
        super().__init__(channels_in, channels_out, 3, padding="same", bias=False)

    def reset_parameters(self):
        super().reset_parameters()
        nn.init.dirac_(self.weight.data[: self.weight.size(1)])


class ConvGroup(nn.Module):
    def __init__(self, channels_in: int, channels_out: int):
        super().__init__()
        self.conv1 = Conv(channels_in, channels_out)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = BatchNorm(channels_out)
        self.conv2 = Conv(channels_out, channels_out)
        self.norm2 = BatchNorm(channels_out)
        self.activ = nn.GELU()

    def forward(self, x):
        x = self.activ(self.norm1(self.pool(self.conv1(x))))
        return self.activ(self.norm2(self.conv2(x)))


class AirbenchNet(nn.Module):
    """airbench94's network (`muon`: airbench94_muon's head scaling) for `classes` classes."""

    def __init__(self, classes: int = 10, muon: bool = False):
        super().__init__()
        self.whiten = nn.Conv2d(3, 24, 2, padding=0, bias=True)
        self.whiten.weight.requires_grad = False  # set from the data, never trained
        blocks, width = [], 24
        for out in WIDTHS:
            blocks.append(ConvGroup(width, out))
            width = out
        self.layers = nn.Sequential(nn.GELU(), *blocks, nn.MaxPool2d(3))
        self.head = nn.Linear(width, classes, bias=False)
        self.muon = muon
        if muon:  # airbench94_muon: unit-std head weights, logits over the feature count
            with torch.no_grad():
                self.head.weight.mul_(1 / self.head.weight.std())
        self.scale = 1 / width if muon else 1 / 9

    def forward(self, x, whiten_bias_grad: bool = True):
        bias = self.whiten.bias if whiten_bias_grad else self.whiten.bias.detach()
        x = self.layers(F.conv2d(x, self.whiten.weight, bias))
        return self.head(x.flatten(1)) * self.scale

    def init_whiten(self, images, eps: float = 5e-4):
        """The whitening filters from `images` (normalised, N x 3 x H x W): the eigenvectors of
        their 2x2 patches' (uncentred) covariance over sqrt(eigenvalue + eps), and negated."""
        c, (h, w) = images.shape[1], self.whiten.weight.shape[2:]
        patches = images.unfold(2, h, 1).unfold(3, w, 1).transpose(1, 3).reshape(-1, c, h, w)
        flat = patches.float().reshape(len(patches), -1)
        values, vectors = torch.linalg.eigh(flat.T @ flat / len(flat))
        values, vectors = values.flip(0), vectors.T.flip(0)  # the strongest direction first
        scaled = vectors.reshape(-1, c, h, w) / torch.sqrt(values + eps).view(-1, 1, 1, 1)
        with torch.no_grad():
            self.whiten.weight.copy_(torch.cat([scaled, -scaled]))


def trainable_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def newton_schulz(g, steps: int = 3, eps: float = 1e-7):
    """An approximately orthogonal matrix near g's (2-D) direction: Muon's quintic
    Newton-Schulz iteration, in bfloat16."""
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g.bfloat16()
    x = x / (x.norm() + eps)  # top singular value at most 1
    tall = g.size(0) > g.size(1)
    if tall:
        x = x.T
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if tall else x


class Muon(torch.optim.Optimizer):
    """Muon as airbench94_muon steps it: Nesterov momentum, the weight renormalised to norm
    sqrt(rows), then a step along the orthogonalised update."""

    def __init__(self, params, lr: float, momentum: float, orthogonalise=newton_schulz):
        super().__init__(params, dict(lr=lr, momentum=momentum))
        self.orthogonalise = orthogonalise

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p.grad)
                buf = state["momentum_buffer"]
                buf.mul_(group["momentum"]).add_(p.grad)
                update = p.grad.add(buf, alpha=group["momentum"])
                p.mul_(len(p) ** 0.5 / p.norm())
                update = self.orthogonalise(update.reshape(len(update), -1)).view(p.shape)
                p.add_(update.to(p.dtype), alpha=-group["lr"])


class Augmented:
    """airbench's training images: normalised and mirrored at random once, padded by
    `translate` reflected pixels; each epoch a random crop per image, every other epoch all
    mirrored, a new shuffle, and full batches only."""

    def __init__(self, images, labels, batch_size: int, translate: int = 2):
        self.labels, self.batch_size, self.pad, self.epoch = labels, batch_size, translate, 0
        flip = torch.rand(len(images)) < 0.5
        images = torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)
        self.padded = F.pad(images, (translate,) * 4, "reflect")
        self.size = images.shape[-1]

    def __len__(self):
        return len(self.labels) // self.batch_size

    def _crops(self):
        r, size = self.pad, self.size
        shifts = torch.randint(-r, r + 1, (len(self.padded), 2))
        out = torch.empty((len(self.padded), 3, size, size), dtype=self.padded.dtype)
        for dy in range(-r, r + 1):
            for dx in range(-r, r + 1):
                picked = (shifts[:, 0] == dy) & (shifts[:, 1] == dx)
                out[picked] = self.padded[picked, :, r + dy : r + dy + size, r + dx : r + dx + size]
        return out

    def __iter__(self):
        images = self._crops()
        if self.epoch % 2 == 1:
            images = images.flip(-1)
        images = images.contiguous(memory_format=torch.channels_last)
        self.epoch += 1
        order = torch.randperm(len(images))
        for i in range(len(self)):
            picked = order[i * self.batch_size : (i + 1) * self.batch_size]
            yield images[picked], self.labels[picked]


def as_tensors(x: np.ndarray, y: np.ndarray):
    """uint8 N x H x W x 3 images normalised as airbench's, N x 3 x H x W channels_last."""
    images = torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255
    mean, std = torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1), torch.tensor(CIFAR_STD).view(1, 3, 1, 1)
    images = ((images - mean) / std).contiguous(memory_format=torch.channels_last)
    return images, torch.from_numpy(np.asarray(y, np.int64))


class Recipe:
    """One of airbench's two training methods over `steps` steps of `per_epoch` each."""

    def __init__(self, net: AirbenchNet, per_epoch: int, steps: int, batch_size: int):
        self.net, self.per_epoch, self.steps, self.batch_size = net, per_epoch, steps, batch_size
        self.step = 0
        self.lookahead: dict[str, torch.Tensor] | None = None

    def begin_epoch(self, epoch: int) -> None: ...

    def end_epoch(self) -> None: ...

    def forward_kwargs(self) -> dict:
        return {}

    def update(self) -> None:
        raise NotImplementedError


class Airbench94(Recipe):
    LR, MOMENTUM, WEIGHT_DECAY, BIAS_SCALER = 11.5, 0.85, 0.0153, 64.0
    EMA_START, EMA_EVERY, EMA_BASE, EMA_POW, WHITEN_BIAS_EPOCHS = 3, 5, 0.95, 3.0, 3

    def __init__(self, net, per_epoch, steps, batch_size):
        super().__init__(net, per_epoch, steps, batch_size)
        # Steps of Nesterov momentum are 1 + 1 / (1 - momentum) times the gradient: the rate
        # is per 1,024 examples of that size, the decay per 1,024 examples whatever the rate.
        kilostep = 1024 * (1 + 1 / (1 - self.MOMENTUM))
        lr, wd = self.LR / kilostep, self.WEIGHT_DECAY * batch_size / kilostep
        named = [(n, p) for n, p in net.named_parameters() if p.requires_grad]
        norm = [p for n, p in named if "norm" in n]
        other = [p for n, p in named if "norm" not in n]
        lr_biases = lr * self.BIAS_SCALER
        self.optimizer = torch.optim.SGD(
            [
                dict(params=norm, lr=lr_biases, weight_decay=wd / lr_biases),
                dict(params=other, lr=lr, weight_decay=wd / lr),
            ],
            momentum=self.MOMENTUM, nesterov=True,
        )  # fmt: skip
        for group in self.optimizer.param_groups:
            group["initial_lr"] = group["lr"]

    def rate(self, step: int) -> float:
        """The triangle: 0.2 up to 1 at 23% of the steps, down to 0.07 at the last."""
        peak = int(0.23 * self.steps)
        if step < peak:
            return 0.2 + 0.8 * step / peak
        return 1 + (0.07 - 1) * (step - peak) / (self.steps - peak)

    def begin_epoch(self, epoch):
        self.epoch = epoch
        self.net.whiten.bias.requires_grad = epoch < self.WHITEN_BIAS_EPOCHS

    def update(self):
        for group in self.optimizer.param_groups:
            group["lr"] = group["initial_lr"] * self.rate(self.step)
        self.optimizer.step()
        self.step += 1
        if self.epoch >= self.EMA_START and self.step % self.EMA_EVERY == 0:
            if self.lookahead is None:
                self.lookahead = {k: v.clone() for k, v in self.net.state_dict().items()}
            else:
                decay = self.EMA_BASE**self.EMA_EVERY * (self.step / self.steps) ** self.EMA_POW
                self._pull(decay)

    def end_epoch(self):
        if self.lookahead is not None:
            self._pull(1.0)

    @torch.no_grad()
    def _pull(self, decay: float):
        """Move the average towards the weights by 1 - decay and copy it into the network."""
        for value, average in zip(
            self.net.state_dict().values(), self.lookahead.values(), strict=True
        ):
            if value.dtype.is_floating_point:
                average.lerp_(value, 1 - decay)
                value.copy_(average)


class Airbench94Muon(Recipe):
    BIAS_LR, HEAD_LR, MUON_LR, WHITEN_BIAS_EPOCHS = 0.053, 0.67, 0.24, 3

    def __init__(self, net, per_epoch, steps, batch_size, orthogonalise=newton_schulz):
        super().__init__(net, per_epoch, steps, batch_size)
        wd = 2e-6 * batch_size
        filters = [p for p in net.parameters() if p.ndim == 4 and p.requires_grad]
        norm = [p for n, p in net.named_parameters() if "norm" in n and p.requires_grad]
        sgd = torch.optim.SGD(
            [
                dict(params=[net.whiten.bias], lr=self.BIAS_LR, weight_decay=wd / self.BIAS_LR),
                dict(params=norm, lr=self.BIAS_LR, weight_decay=wd / self.BIAS_LR),
                dict(params=[net.head.weight], lr=self.HEAD_LR, weight_decay=wd / self.HEAD_LR),
            ],
            momentum=0.85, nesterov=True,
        )  # fmt: skip
        muon = Muon(filters, lr=self.MUON_LR, momentum=0.6, orthogonalise=orthogonalise)
        self.optimizers = [sgd, muon]
        for opt in self.optimizers:
            for group in opt.param_groups:
                group["initial_lr"] = group["lr"]
        self.whiten_steps = math.ceil(self.WHITEN_BIAS_EPOCHS * per_epoch)

    def forward_kwargs(self):
        return {"whiten_bias_grad": self.step < self.whiten_steps}

    def update(self):
        sgd, muon = self.optimizers
        sgd.param_groups[0]["lr"] = sgd.param_groups[0]["initial_lr"] * (
            1 - self.step / self.whiten_steps
        )
        for group in sgd.param_groups[1:] + muon.param_groups:
            group["lr"] = group["initial_lr"] * (1 - self.step / self.steps)
        for opt in self.optimizers:
            opt.step()
        self.step += 1


def autocast(precision: str):
    return torch.autocast("cpu", torch.bfloat16, enabled=precision == "mixed_bfloat16")


def validate(net, images, labels, precision: str) -> float:
    net.eval()
    correct = 0
    with torch.inference_mode(), autocast(precision):
        for start in range(0, len(images), 2000):
            logits = net(images[start : start + 2000])
            correct += int((logits.argmax(1) == labels[start : start + 2000]).sum())
    net.train()
    return correct / len(images)


def train(config: Path, overrides: list[str], epochs: int | None, precision: str, compiled: bool):
    """Train airbench's recipe for `config` on its data; one record per epoch."""
    from cnnlab.config import load_config
    from cnnlab.data import load_dataset

    cfg = load_config(config, overrides)
    muon = cfg.train.optimizer == "muon"
    epochs = epochs or cfg.train.epochs
    torch.manual_seed(cfg.seed)
    data = load_dataset(cfg.data, cfg.seed)
    x_train, y_train = as_tensors(data.x_train, data.y_train)
    x_val, y_val = as_tensors(data.x_val, data.y_val)
    batch_size = 2000 if muon else 1024  # airbench's, as the shipped configs
    loader = Augmented(x_train, y_train, batch_size)
    net = AirbenchNet(data.num_classes, muon=muon).to(memory_format=torch.channels_last)
    net.init_whiten(x_train[:5000])
    steps = epochs * len(loader)
    orthogonalise = torch.compile(newton_schulz) if compiled else newton_schulz
    recipe = (
        Airbench94Muon(net, len(loader), steps, batch_size, orthogonalise)
        if muon
        else Airbench94(net, len(loader), steps, batch_size)
    )
    model = torch.compile(net) if compiled else net
    records = []
    for epoch in range(epochs):
        recipe.begin_epoch(epoch)
        wall, cpu = time.perf_counter(), time.process_time()
        loss_sum, seen = 0.0, 0
        for images, labels in loader:
            with autocast(precision):
                logits = model(images, **recipe.forward_kwargs())
                loss = F.cross_entropy(logits.float(), labels, label_smoothing=0.2, reduction="sum")
            loss.backward()
            recipe.update()
            net.zero_grad(set_to_none=True)
            loss_sum += float(loss.detach())
            seen += len(labels)
        recipe.end_epoch()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        record = {
            "epoch": epoch + 1, "train_seconds": round(wall, 3), "cpu_seconds": round(cpu, 3),
            "images": seen, "loss": loss_sum / seen,
            "val_accuracy": validate(model, x_val, y_val, precision),
        }  # fmt: skip
        records.append(record)
        print(json.dumps(record), flush=True)
    return {
        "recipe": "airbench94_muon" if muon else "airbench94",
        "mode": "compiled" if compiled else "eager",
        "precision": precision,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "train_images": len(x_train),
        "val_images": len(x_val),
        "trainable_parameters": trainable_parameters(net),
        "epochs": records,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    parser.add_argument("--epochs", type=int, help="default: the config's train.epochs")
    parser.add_argument("--precision", choices=["float32", "mixed_bfloat16"], default="float32")
    parser.add_argument("--compile", action="store_true", help="torch.compile the network")
    parser.add_argument("--json", type=Path, help="write the epochs' records here")
    args = parser.parse_args()
    result = train(args.config, args.overrides, args.epochs, args.precision, args.compile)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
