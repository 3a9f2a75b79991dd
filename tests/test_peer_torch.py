"""bench/peer_torch.py, the PyTorch peer bench/peer_speed.py times cnnlab against, trains the
network cnnlab's airbench builder builds (skipped where PyTorch, a bench-only dependency, is
not installed)."""

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from bench.peer_torch import AirbenchNet, trainable_parameters  # noqa: E402
from cnnlab.config import load_config  # noqa: E402
from cnnlab.models import build_model  # noqa: E402
from cnnlab.models.common import trainable_parameters as keras_trainable  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("recipe", ["cifar10_airbench94", "cifar10_airbench94_muon"])
def test_the_peer_trains_the_weights_cnnlab_trains(recipe):
    cfg = load_config(CONFIGS / f"{recipe}.yaml", need_data=False)
    model = build_model(cfg.model, (32, 32, 3), 10)
    peer = AirbenchNet(10, muon=cfg.train.optimizer == "muon")
    # airbench's head has no bias; the airbench94 recipe keeps Keras' (10 weights).
    head_bias = 10 if cfg.model.head_bias else 0
    assert trainable_parameters(peer) + head_bias == keras_trainable(model)
    logits = peer(torch.zeros(2, 3, 32, 32).contiguous(memory_format=torch.channels_last))
    assert logits.shape == (2, 10)
