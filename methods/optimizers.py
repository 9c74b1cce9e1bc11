"""The optimizers a method's preset can choose: "sgd" (AGNN's and AMC-Net's papers'), "adam"
(AGSS-VOS's paper: Adam with L2 weight decay added to the gradient) or "adamw" (decoupled weight
decay; from random initialisation it learns far faster than SGD, which the tiny presets need)."""

import torch
from torch import nn

OPTIMIZERS = ("sgd", "adam", "adamw")


def check_optimizer(name: str) -> None:
    """Raise ValueError listing the known optimizers unless `name` is one."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(OPTIMIZERS)}")


def make_optimizer(name: str, groups: list[dict], momentum: float,
                   weight_decay: float) -> torch.optim.Optimizer:
    """SGD with `momentum`, Adam or AdamW (momentum unused by both) over parameter groups that
    each carry their "lr"; `weight_decay` applies to every group that does not set its own.

    The fused implementations: one kernel updates every tensor (torch's default on CPU is a loop
    over them; for AGSS-VOS's tiny network an AdamW step takes 7 ms fused against 36 ms)."""
    check_optimizer(name)
    if name == "adam":
        return torch.optim.Adam(groups, weight_decay=weight_decay, fused=True)
    if name == "adamw":
        return torch.optim.AdamW(groups, weight_decay=weight_decay, fused=True)
    return torch.optim.SGD(groups, momentum=momentum, weight_decay=weight_decay, fused=True)


def embedding_and_rest(model: nn.Module, embedding: nn.Module, lr: float,
                       rest_multiplier: float) -> list[dict]:
    """Two parameter groups: the (pretrainable) `embedding`'s parameters at `lr`, and every
    other parameter of `model` (the newly initialised head, graph, …) at lr × rest_multiplier."""
    inside, outside = partition(model, [embedding])
    return [{"params": inside, "lr": lr}, {"params": outside, "lr": lr * rest_multiplier}]


def weights_and_biases(model: nn.Module, lr: float, bias_lr_multiplier: float) -> list[dict]:
    """Two parameter groups, the Caffe recipe AMC-Net trains with: every parameter but the biases
    at `lr`, and the biases at lr × bias_lr_multiplier without weight decay."""
    named = list(model.named_parameters())
    biases = [parameter for name, parameter in named if name.endswith(".bias")]
    rest = [parameter for name, parameter in named if not name.endswith(".bias")]
    return [{"params": rest, "lr": lr},
            {"params": biases, "lr": lr * bias_lr_multiplier, "weight_decay": 0.0}]


def modules_faster(model: nn.Module, modules: list[nn.Module], lr: float,
                   multiplier: float) -> list[dict]:
    """Two parameter groups: every parameter of `model` outside `modules` at `lr`, and those of
    `modules` (AGSS-VOS's attention generator and last layers) at lr × multiplier."""
    inside, outside = partition(model, modules)
    return [{"params": outside, "lr": lr}, {"params": inside, "lr": lr * multiplier}]


def partition(model: nn.Module, modules: list[nn.Module]) -> tuple[list, list]:
    """`model`'s parameters split in two lists: those of `modules`, and all the others."""
    inside = [parameter for module in modules for parameter in module.parameters()]
    chosen = {id(parameter) for parameter in inside}
    return inside, [parameter for parameter in model.parameters() if id(parameter) not in chosen]
