"""The optimizer and schedule: learning rates per group, a reloaded optimizer that continues exactly, warm-up and cosine decay."""

import pytest
import torch
from safetensors.torch import load, save

from vecmetric.train import TrainOptions
from vecmetric.train.checkpoint import optimizer_state_dict, optimizer_tensors
from vecmetric.train.optim import build_optimizer, lr_lambda


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.backbone = torch.nn.Conv2d(3, 8, 3)
        self.head = torch.nn.Linear(8, 4)

    def forward(self, x):
        return self.head(self.backbone(x).mean((2, 3)))


def make(options):
    net = Net().to(memory_format=torch.channels_last)
    return net, build_optimizer(net, options)


def step(net, optimizer, x):
    optimizer.zero_grad()
    net(x).square().sum().backward()
    optimizer.step()


def test_groups_get_their_learning_rates_and_weight_decay():
    net, optimizer = make(TrainOptions(lr=1e-3, head_lr=5e-3, weight_decay=0.01))
    assert [group["lr"] for group in optimizer.param_groups] == [1e-3, 5e-3]
    assert all(group["weight_decay"] == 0.01 for group in optimizer.param_groups)
    assert isinstance(optimizer, torch.optim.AdamW) and not optimizer.param_groups[0]["fused"]


def test_a_reloaded_optimizer_continues_exactly_on_channels_last_weights():
    options = TrainOptions(lr=1e-2, head_lr=1e-2)
    x = torch.randn(2, 3, 9, 9).contiguous(memory_format=torch.channels_last)
    net, optimizer = make(options)
    step(net, optimizer, x)
    tensors, meta = optimizer_tensors(optimizer.state_dict())
    blob, weights = save(tensors), {k: v.clone() for k, v in net.state_dict().items()}
    step(net, optimizer, x)

    net2, optimizer2 = make(options)
    net2.load_state_dict(weights)
    optimizer2.load_state_dict(optimizer_state_dict(load(blob), meta))
    # Saved moments come back contiguous: torch 2.14's fused CPU kernel (fused=True) would pair them with
    # the wrong elements of the channels_last weight and fail here.
    step(net2, optimizer2, x)
    assert torch.equal(net2.backbone.weight, net.backbone.weight) and torch.equal(net2.head.weight, net.head.weight)


def test_warm_up_then_cosine_decay_to_zero():
    factor = lr_lambda(total_steps=110, warmup_steps=10)
    assert factor(0) == pytest.approx(0.1) and factor(9) == pytest.approx(1.0)
    assert factor(10) == pytest.approx(1.0) and factor(60) == pytest.approx(0.5) and factor(110) == pytest.approx(0.0)
    assert lr_lambda(total_steps=50, warmup_steps=0)(0) == pytest.approx(1.0)
